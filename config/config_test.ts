import assert from "node:assert/strict";
import {
  ConfigError,
  configFromObject,
  defaultConfig,
  describeConfig,
  loadConfig,
  parseConfig,
} from "./config.ts";
import { defaultNodeLimits, NODE_LIMIT_SPECS } from "./limits.ts";

const NODES = `nodes:
  - { id: 1, peer: 127.0.0.1:7001, client: 127.0.0.1:8001, http: 127.0.0.1:9001 }
  - { id: 2, peer: 127.0.0.1:7002, client: 127.0.0.1:8002, http: 127.0.0.1:9002 }
`;

function configError(text: string, env: Record<string, string> = {}): ConfigError {
  try {
    parseConfig(text, "test.yaml", env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("conf/config.yaml loads as a 3-node loopback cluster with defaults filled in", async () => {
  const c = await loadConfig(new URL("../conf/config.yaml", import.meta.url).pathname, {});
  assert.equal(c.nodes.length, 3);
  assert.deepEqual(c.nodes.map((n) => n.id), [1, 2, 3]);
  assert.equal(c.storage, "lsm");
  assert.equal(c.transport, "tcp");
  assert.equal(c.nodes[0].listenPeer, c.nodes[0].peer);
  assert.equal(c.raft.maxInflightMsgs, 256);
  assert.equal(c.lsm.levelMultiplier, 10);
});

Deno.test("a misspelled key is rejected naming the key, its line and a suggestion", () => {
  const e = configError(`${NODES}raft:\n  heartbeat_ms: 50\n  snapshot_treshold: 100\n`);
  assert.equal(e.path, "raft.snapshot_treshold");
  assert.equal(e.line, 6);
  assert.match(e.message, /test\.yaml:6/);
  assert.match(e.message, /did you mean "snapshot_threshold"/);
});

Deno.test("unknown top-level and node keys are rejected", () => {
  assert.equal(configError(`${NODES}storag: lsm\n`).path, "storag");
  const e = configError(
    `nodes:\n  - { id: 1, peer: a:1, client: a:2, http: a:3, htp: a:4 }\n`,
  );
  assert.equal(e.path, "nodes[0].htp");
});

Deno.test("wrong types and out-of-range values are rejected with the key path", () => {
  assert.equal(configError(`${NODES}raft:\n  tick_ms: fast\n`).path, "raft.tick_ms");
  assert.equal(configError(`${NODES}raft:\n  pre_vote: 3\n`).path, "raft.pre_vote");
  assert.equal(configError(`${NODES}raft:\n  tick_ms: 0\n`).path, "raft.tick_ms");
  assert.equal(configError(`${NODES}storage: rocks\n`).path, "storage");
  assert.equal(
    configError(`nodes:\n  - { id: 1, peer: nowhere, client: a:2, http: a:3 }\n`).path,
    "nodes[0].peer",
  );
});

Deno.test("duplicate ids and addresses are rejected", () => {
  const dupId = configError(
    `nodes:\n  - { id: 1, peer: a:1, client: a:2, http: a:3 }\n  - { id: 1, peer: a:4, client: a:5, http: a:6 }\n`,
  );
  assert.equal(dupId.path, "nodes[1].id");
  assert.equal(dupId.line, 3);
  const dupAddr = configError(
    `nodes:\n  - { id: 1, peer: a:1, client: a:2, http: a:3 }\n  - { id: 2, peer: a:1, client: a:5, http: a:6 }\n`,
  );
  assert.equal(dupAddr.path, "nodes[1].peer");
});

Deno.test("missing nodes, missing node keys and invalid YAML are errors", () => {
  assert.equal(configError(`storage: lsm\n`).path, "nodes");
  assert.equal(configError(`nodes:\n  - { id: 1, peer: a:1 }\n`).path, "nodes[0].client");
  assert.match(configError(`nodes: [\n`).message, /invalid YAML/);
});

Deno.test("GOKV_* environment variables override the file and are validated", () => {
  const c = parseConfig(`${NODES}storage: lsm\n`, "t.yaml", {
    GOKV_STORAGE: "simplefile",
    GOKV_RAFT_HEARTBEAT_MS: "40",
    GOKV_RAFT_PRE_VOTE: "false",
    GOKV_LOG_FORMAT: "json",
    GOKV_SIM_RUNS: "10", // not a config key and not a config section: ignored
  });
  assert.equal(c.storage, "simplefile");
  assert.equal(c.raft.heartbeatMs, 40);
  assert.equal(c.raft.preVote, false);
  assert.equal(c.log.format, "json");
  assert.match(configError(NODES, { GOKV_RAFT_HEARTBEAT: "4" }).message, /GOKV_RAFT_HEARTBEAT_MS/);
  assert.equal(configError(NODES, { GOKV_RAFT_TICK_MS: "soon" }).path, "raft.tick_ms");
});

Deno.test("cross-field rules: lease reads need check quorum, election >= 2 heartbeats", () => {
  assert.equal(
    configError(`${NODES}raft:\n  lease_read: true\n  check_quorum: false\n`).path,
    "raft.lease_read",
  );
  assert.equal(configError(`${NODES}raft:\n  election_ms: 60\n`).path, "raft.election_ms");
});

Deno.test("listen addresses default to the advertised ones and may differ", () => {
  const c = parseConfig(
    `nodes:\n  - { id: 1, peer: 10.0.0.1:7001, client: a:2, http: a:3, listen_peer: 0.0.0.0:7001 }\n`,
  );
  assert.equal(c.nodes[0].listenPeer, "0.0.0.0:7001");
  assert.equal(c.nodes[0].listenClient, "a:2");
});

Deno.test("a missing file is a ConfigError naming it", async () => {
  await assert.rejects(loadConfig("/nonexistent/gokv.yaml", {}), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /\/nonexistent\/gokv\.yaml/);
    return true;
  });
});

Deno.test("defaultConfig builds a valid config in code and every key is documented", () => {
  const c = defaultConfig([{ id: 7, peer: "h:1", client: "h:2", http: "h:3" }]);
  assert.equal(c.nodes[0].id, 7);
  const docs = describeConfig();
  assert.ok(docs.some((d) => d.key === "raft.snapshot_threshold" && d.default === "100000"));
  assert.ok(docs.every((d) => d.doc.length > 0 && d.env.startsWith("GOKV_")));
});

Deno.test("configFromObject validates an object in the file's shape", () => {
  const c = configFromObject({
    storage: "memory",
    nodes: [{ id: 1, peer: "127.0.0.1:1", client: "127.0.0.1:2", http: "127.0.0.1:3" }],
    raft: { heartbeat_ms: 20 },
  });
  assert.equal(c.storage, "memory");
  assert.equal(c.raft.heartbeatMs, 20);
  assert.throws(
    () => configFromObject({ nodes: [], raft: { heartbat_ms: 1 } }),
    (e: unknown) => e instanceof ConfigError && e.path === "raft.heartbat_ms",
  );
});

Deno.test("tls: cluster-wide, per-port and per-node settings resolve field by field; {id} is the node", async () => {
  const { tlsFor } = await import("./config.ts");
  const c = parseConfig(
    `nodes:
  - { id: 1, peer: 127.0.0.1:7001, client: 127.0.0.1:8001, http: 127.0.0.1:9001 }
  - id: 2
    peer: 127.0.0.1:7002
    client: 127.0.0.1:8002
    http: 127.0.0.1:9002
    tls: { cert: own.crt, http: { key: own-http.key } }
tls:
  cert: n{id}.crt
  key: n{id}.key
  ca: ca.crt
  http: { client_cert_auth: true }
`,
    "t.yaml",
    { GOKV_TLS_CLIENT_KEY: "env-client.key" },
  );
  assert.deepEqual(tlsFor(c, 1, "peer"), {
    cert: "n1.crt",
    key: "n1.key",
    ca: "ca.crt",
    clientCertAuth: true,
  });
  assert.equal(tlsFor(c, 1, "client")?.key, "env-client.key");
  assert.equal(tlsFor(c, 1, "client")?.clientCertAuth, false);
  assert.equal(tlsFor(c, 1, "http")?.clientCertAuth, true);
  assert.equal(tlsFor(c, 2, "peer")?.cert, "own.crt");
  assert.equal(tlsFor(c, 2, "http")?.key, "own-http.key");
  assert.equal(tlsFor(parseConfig(NODES, "t.yaml", {}), 1, "client"), undefined);
});

Deno.test("tls: a cert without a key, peer TLS without ca and unknown tls keys are refused", () => {
  assert.match(configError(`${NODES}tls:\n  cert: a.crt\n`).message, /cert and key go together/);
  assert.match(
    configError(`${NODES}tls:\n  cert: a.crt\n  key: a.key\n`).message,
    /peer TLS is mutual: it needs ca/,
  );
  assert.equal(configError(`${NODES}tls:\n  certs: a\n`).path, "tls.certs");
  assert.match(
    configError(NODES, { GOKV_TLS_CERTT: "x" }).message,
    /did you mean GOKV_TLS_CERT/,
  );
  // A plaintext peer port with TLS on the client port only.
  const c = parseConfig(`${NODES}tls:\n  client: { cert: a.crt, key: a.key }\n`, "t.yaml", {});
  assert.equal(c.tls.client?.cert, "a.crt");
});

Deno.test("transport grpc with a cluster secret is a config error (its peers use mutual TLS)", () => {
  const e = configError(`${NODES}transport: grpc\nsecurity:\n  peer_secret_file: s\n`);
  assert.equal(e.path, "transport");
  assert.match(e.message, /mutual TLS only/);
  const ok = parseConfig(
    `${NODES}transport: grpc\ntls: { cert: a, key: b, ca: c }\n`,
    "t.yaml",
    {},
  );
  assert.equal(ok.transport, "grpc");
});

Deno.test("every node limit parses into its own NodeLimits field with its default", () => {
  // The YAML key's camelCase is the field (a kv_connect_* limit once landed under another name
  // and so was never enforced).
  const c = defaultConfig([{
    id: 1,
    peer: "127.0.0.1:1",
    client: "127.0.0.1:2",
    http: "127.0.0.1:3",
  }]);
  assert.deepEqual(c.limits, defaultNodeLimits());
  for (const s of NODE_LIMIT_SPECS) assert.equal(c.limits[s.field], s.default, s.key);
});
