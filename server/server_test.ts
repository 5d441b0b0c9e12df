import assert from "node:assert/strict";
import { type Config, defaultConfig } from "../config/config.ts";
import { nullLogger } from "../raft/logger.ts";
import { Client } from "../client/client.ts";
import { type ServerHandle, startServer, startServerWithHooks } from "./server.ts";

/** Distinct free ports (all listeners are held open until every port is chosen). */
function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => l.addr.port);
  for (const l of ls) l.close();
  return ports;
}

async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

interface TestCluster {
  config: Config;
  /** The config with the extra (not started) nodes too. */
  fullConfig: Config;
  servers: Map<number, ServerHandle>;
  endpoints: string[];
  leader(): Promise<number>;
  stop(): Promise<void>;
}

async function startCluster(
  size = 3,
  extra = 0,
  attempt = 1,
  opts: { storage?: Config["storage"]; snapshotThreshold?: number } = {},
): Promise<TestCluster> {
  const ports = freePorts(3 * (size + extra));
  const all = Array.from({ length: size + extra }, (_, i) => ({
    id: i + 1,
    peer: `127.0.0.1:${ports[3 * i]}`,
    client: `127.0.0.1:${ports[3 * i + 1]}`,
    http: `127.0.0.1:${ports[3 * i + 2]}`,
  }));
  const nodes = all.slice(0, size);
  const config = defaultConfig(nodes);
  const fullConfig = defaultConfig(all);
  config.storage = opts.storage ?? "memory";
  config.transport = "tcp";
  config.dataDir = await Deno.makeTempDir({ prefix: "gokv-server-test-" });
  Object.assign(config.raft, { tickMs: 10, heartbeatMs: 30, electionMs: 200 });
  if (opts.snapshotThreshold) config.raft.snapshotThreshold = opts.snapshotThreshold;
  const servers = new Map<number, ServerHandle>();
  const started = await Promise.allSettled(nodes.map(async (n) => {
    servers.set(n.id, await startServer(config, n.id, { logger: nullLogger }));
  }));
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    // A port taken by another process between choosing and binding: start over.
    await Promise.all([...servers.values()].map((s) => s.close()));
    await Deno.remove(config.dataDir, { recursive: true }).catch(() => {});
    const reason = (failed as PromiseRejectedResult).reason;
    if (reason instanceof Deno.errors.AddrInUse && attempt < 3) {
      return startCluster(size, extra, attempt + 1, opts);
    }
    throw reason;
  }
  for (const k of ["storage", "transport", "dataDir", "raft"] as const) {
    (fullConfig as unknown as Record<string, unknown>)[k] = config[k];
  }
  const c: TestCluster = {
    config,
    fullConfig,
    servers,
    endpoints: nodes.map((n) => n.client),
    leader: () =>
      waitFor("a leader", () => {
        for (const [id, s] of servers) if (s.status().role === "leader") return id;
        return 0;
      }),
    stop: async () => {
      await Promise.all([...servers.values()].map((s) => s.close()));
      await Deno.remove(config.dataDir, { recursive: true }).catch(() => {});
    },
  };
  return c;
}

Deno.test("three in-process nodes serve put, get, delete through the client and HTTP", async () => {
  const c = await startCluster();
  const kv = await Client.connect({ endpoints: c.endpoints });
  try {
    const leader = await c.leader();
    await kv.put("hello", "hello world");
    assert.equal(await kv.getString("hello"), "hello world");
    assert.equal(kv.leaderEndpoint, c.config.nodes.find((n) => n.id === leader)!.client);
    // Every node eventually applies it; a serializable read on a follower sees it then.
    const follower = c.config.nodes.find((n) => n.id !== leader)!;
    await waitFor("replication", async () => {
      const r = await fetch(`http://${follower.http}/v1/kv/hello?consistency=serializable`);
      return r.status === 200 && (await r.text()) === "hello world";
    });
    // A follower forwards an HTTP write to the leader; a linearizable read on it sees it at once.
    const put = await fetch(`http://${follower.http}/v1/kv/via-follower`, {
      method: "PUT",
      body: "yes",
    });
    assert.equal(put.status, 200, await put.text());
    const got = await fetch(`http://${follower.http}/v1/kv/via-follower`);
    assert.equal(await got.text(), "yes");
    // A client pointed only at a follower is redirected to the leader.
    const kv2 = await Client.connect({ endpoints: [follower.client] });
    try {
      await kv2.put("redirected", "1");
      assert.notEqual(kv2.leaderEndpoint, follower.client);
    } finally {
      await kv2.close();
    }
    await kv.delete("hello");
    assert.equal(await kv.get("hello"), undefined);
    const missing = await fetch(`http://${follower.http}/v1/kv/hello`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error, "not_found");
    const status = await (await fetch(`http://${follower.http}/v1/status`)).json();
    assert.equal(status.role, "follower");
    assert.equal(status.leader, leader);
    const metrics = await (await fetch(`http://${follower.http}/metrics`)).text();
    assert.match(metrics, /^gokv_applies_total [1-9]/m);
    const members = await kv.members();
    assert.deepEqual(members.map((m) => m.id), [1, 2, 3]);
  } finally {
    await kv.close();
    await c.stop();
  }
});

Deno.test("when the leader is closed a new one is elected and the client keeps working", async () => {
  const c = await startCluster();
  const kv = await Client.connect({ endpoints: c.endpoints, timeoutMs: 15_000 });
  try {
    const old = await c.leader();
    for (let i = 0; i < 20; i++) await kv.put(`k${i}`, `v${i}`);
    // Writers keep going while the leader stops.
    let stop = false;
    let acked = 0;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        await kv.put(`w${i}`, `x${i}`);
        acked = i + 1;
      }
    })();
    await waitFor("some writes", () => acked >= 5);
    await c.servers.get(old)!.close();
    c.servers.delete(old);
    const next = await c.leader();
    assert.notEqual(next, old);
    const before = acked;
    await waitFor("writes after the failover", () => acked >= before + 10);
    stop = true;
    await writer;
    for (let i = 0; i < 20; i++) assert.equal(await kv.getString(`k${i}`), `v${i}`);
    assert.equal(await kv.getString(`w${acked - 1}`), `x${acked - 1}`);
  } finally {
    await kv.close();
    await c.stop();
  }
});

Deno.test("a node started with --join does not bootstrap; once added it catches up and serves", async () => {
  // Nodes 1-3 bootstrap from a 3-node config; node 4 starts from a config that lists it too.
  const c = await startCluster(3, 1);
  const kv = await Client.connect({ endpoints: c.endpoints, timeoutMs: 15_000 });
  let n4: ServerHandle | undefined;
  try {
    await c.leader();
    for (let i = 0; i < 10; i++) await kv.put(`j${i}`, `v${i}`);
    const spec = c.fullConfig.nodes[3];
    n4 = await startServer(c.fullConfig, 4, { logger: nullLogger, join: true });
    const s4 = n4.status();
    assert.equal(s4.term, 0, "a joining node does not campaign or bootstrap");
    assert.deepEqual((s4.conf as { voters: number[] }).voters, []);
    await kv.addMember({ id: 4, peer: spec.peer, client: spec.client, http: spec.http });
    await waitFor("node 4 to become a voter", async () => {
      const m = await kv.members();
      return m.some((x) => x.id === 4 && !x.learner);
    }, 20_000);
    await waitFor("node 4 to catch up", () => (n4!.status().appliedIndex as number) >= 10);
    const r = await fetch(`http://${spec.http}/v1/kv/j9?format=json`);
    const got = await r.json();
    assert.deepEqual([got.key, got.value, got.encoding], ["j9", "v9", "bytes"]);
    assert.match(got.versionstamp, /^[0-9a-f]{20}$/);
  } finally {
    await kv.close();
    await n4?.close();
    await c.stop();
  }
});

Deno.test("a restarted node learns a member added while it was down from the snapshot it installs, and drops a removed member from its peers", async () => {
  const c = await startCluster(3, 1, 1, { storage: "simplefile", snapshotThreshold: 20 });
  const kv = await Client.connect({ endpoints: c.endpoints, timeoutMs: 15_000 });
  let n4: ServerHandle | undefined;
  const peersOf3: { current?: () => ReadonlyMap<number, string> } = {};
  const stop3 = async () => {
    await c.servers.get(3)?.close();
    c.servers.delete(3);
  };
  const restart3 = async () => {
    await stop3();
    // Node 3's config lists nodes 1-3 only: it learns node 4 from the replicated state.
    c.servers.set(
      3,
      await startServerWithHooks(c.config, 3, { logger: nullLogger }, {
        peers: (current) => peersOf3.current = current,
      }),
    );
  };
  try {
    await restart3();
    await c.leader();
    await stop3();
    const l = await c.leader();
    const spec = c.fullConfig.nodes[3];
    n4 = await startServer(c.fullConfig, 4, { logger: nullLogger, join: true });
    await kv.addMember({ id: 4, peer: spec.peer, client: spec.client, http: spec.http });
    for (let i = 0; i < 60; i++) await kv.put(`s${i}`, `v${i}`);
    const ls = c.servers.get(l)!.status();
    assert.ok((ls.snapshotIndex as number) > 0, "the leader compacted its log");
    await restart3();
    const http3 = c.config.nodes[2].http;
    await waitFor("node 3 to know node 4's addresses", async () => {
      const r = await (await fetch(`http://${http3}/v1/members`)).json();
      const m4 = r.members.find((m: { id: number }) => m.id === 4);
      return m4?.http === spec.http && m4?.client === spec.client;
    }, 20_000);
    assert.equal(peersOf3.current!().get(4), spec.peer, "node 4 is a peer of node 3");
    // Removed while node 3 runs; node 3 restarts with node 4 still in its members.json.
    await kv.removeMember(4);
    await waitFor("node 3 to apply the removal", async () => {
      const r = await (await fetch(`http://${http3}/v1/members`)).json();
      return !r.members.some((m: { id: number }) => m.id === 4);
    });
    await restart3();
    assert.ok(!peersOf3.current!().has(4), "node 4 is no peer after the restart");
    assert.deepEqual([...peersOf3.current!().keys()].sort(), [1, 2]);
  } finally {
    await kv.close();
    await n4?.close();
    await c.stop();
  }
});

Deno.test("a node whose log sync fails reports unhealthy (503, raft halted) and resolves failed", async () => {
  const [peer, client, http] = freePorts(3);
  const config = defaultConfig([{
    id: 1,
    peer: `127.0.0.1:${peer}`,
    client: `127.0.0.1:${client}`,
    http: `127.0.0.1:${http}`,
  }]);
  config.storage = "memory";
  config.dataDir = await Deno.makeTempDir({ prefix: "gokv-server-test-" });
  Object.assign(config.raft, { tickMs: 10, heartbeatMs: 30, electionMs: 200 });
  const errors: string[] = [];
  const logger = {
    ...nullLogger,
    error: (msg: string, f?: Record<string, unknown>) => errors.push(`${msg} ${JSON.stringify(f)}`),
  };
  let fail = false;
  let syncsAfterFailure = 0;
  const s = await startServerWithHooks(config, 1, { logger }, {
    wrapLogStore: (log) => {
      const sync = log.sync.bind(log);
      log.sync = () => {
        if (!fail) return sync();
        syncsAfterFailure++;
        return Promise.reject(new Error("EIO: fsync failed"));
      };
      return log;
    },
  });
  try {
    const healthz = async () => {
      const r = await fetch(`http://${s.httpAddress}/healthz`);
      return { status: r.status, body: await r.json() };
    };
    await waitFor("a leader", () => s.status().role === "leader");
    assert.equal((await healthz()).status, 200);
    fail = true;
    const put = await fetch(`http://${s.httpAddress}/v1/kv/k`, { method: "PUT", body: "v" });
    await put.body?.cancel();
    assert.notEqual(put.status, 200);
    // Bounded: a node that never reports its halt fails this test instead of hanging the suite.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const err = await Promise.race([
      s.failed,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("failed did not resolve within 10 s")), 10_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.match(err.message, /EIO/);
    const h = await healthz();
    assert.equal(h.status, 503);
    assert.equal(h.body.status, "unhealthy");
    assert.ok(h.body.problems.some((p: string) => p.startsWith("raft halted: EIO")), h.body);
    assert.ok(errors.some((l) => l.includes("node halted on a fatal error") && l.includes("EIO")));
    assert.equal(syncsAfterFailure, 1, "the failed fsync is never retried");
  } finally {
    await s.close();
    await Deno.remove(config.dataDir, { recursive: true }).catch(() => {});
  }
  assert.equal(syncsAfterFailure, 1, "close() does not sync again after a failed fsync");
});
