/**
 * Issue 13 acceptance, on real node processes: a cluster with TLS on every port, a cluster secret
 * and tokens serves the README flow over the client port (CLI), HTTPS and the peer port; a
 * read-only token cannot write (binary protocol, HTTP, CLI); a missing token is 401 / exit 1; a
 * cross-site POST changes nothing; a node asked to listen on 0.0.0.0 without security exits 2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { hashToken } from "../server/auth.ts";
import { Client } from "../client/client.ts";
import { PermissionDeniedError, UnauthenticatedError } from "../client/errors.ts";
import { freePort, gokv, ROOT, TestCluster, waitFor } from "./harness.ts";
import { forge } from "./forge.ts";
import { https, secured, TOKENS } from "./secured.ts";

Deno.test({
  name: "a TLS + token cluster serves the README flow over every port and enforces roles",
  sanitizeResources: false,
  fn: async () => {
    const s = await secured();
    const admin = https(s, TOKENS.admin);
    const c = await TestCluster.create({
      storage: "memory",
      extraYaml: s.extraYaml,
      statusFetch: (http) => admin(`https://${http}/v1/status`),
    });
    const tls = ["--cacert", s.ca];
    try {
      c.startAll();
      const leader = await c.waitLeader();
      const cli = (args: string[], token?: string) =>
        c.cli([...args, ...tls, ...(token ? ["--token", token] : [])]);

      // The README flow through the CLI (binary protocol over TLS, token in the handshake).
      let r = await cli(["set", "hello", "hello world"], TOKENS.writer);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Success! Result: <nil>/);
      r = await cli(["get", "hello"], TOKENS.reader);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Success! Value: hello world/);
      // GOKV_TOKEN / GOKV_CACERT work as the flags do.
      r = await gokv(["get", "hello", "--config", c.configPath], {
        env: { GOKV_TOKEN: TOKENS.reader, GOKV_CACERT: s.ca },
      });
      assert.equal(r.code, 0, r.stderr);
      r = await cli(["status", "--json"], TOKENS.reader);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).filter((x: { status?: unknown }) => x.status).length, 3);

      // The same over HTTPS: a follower forwards the write to the leader (over HTTPS too).
      const follower = [...c.nodes.keys()].find((id) => id !== leader)!;
      const fHttp = c.nodes.get(follower)!.http;
      const writer = https(s, TOKENS.writer);
      let res = await writer(`https://${fHttp}/v1/kv/greeting`, { method: "PUT", body: "hi" });
      assert.equal(res.status, 200, await res.text());
      res = await https(s, TOKENS.reader)(`https://${fHttp}/v1/kv/greeting`);
      assert.equal(await res.text(), "hi");
      res = await https(s, TOKENS.reader)(`https://${fHttp}/v1/kv?prefix=gree`);
      assert.equal((await res.json()).count, 1);
      r = await cli(["delete", "hello"], TOKENS.writer);
      assert.equal(r.code, 0, r.stderr);
      r = await cli(["get", "hello"], TOKENS.reader);
      assert.match(r.stdout, /key not found/);

      // Plaintext is not served on the TLS ports.
      await assert.rejects(
        fetch(`http://${fHttp}/v1/status`, { signal: AbortSignal.timeout(3000) }),
      );

      // Admin: a backup over HTTPS with the admin token; the writer may not take one.
      const backup = join(s.dir, "backup.db");
      r = await cli(["snapshot", "save", backup], TOKENS.admin);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Snapshot saved/);
      r = await cli(["snapshot", "save", join(s.dir, "b2.db")], TOKENS.writer);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /permission_denied|needs role admin/);

      // A read-only token cannot write: binary protocol, HTTP, CLI.
      const kv = await Client.connect({
        endpoints: [...c.nodes.values()].map((n) => n.client),
        tls: { caCert: s.caPem },
        token: TOKENS.reader,
      });
      try {
        assert.equal(await kv.getString("greeting"), "hi");
        await assert.rejects(kv.put("greeting", "nope"), PermissionDeniedError);
        await assert.rejects(kv.delete("greeting"), PermissionDeniedError);
        await assert.rejects(kv.transferLeader(follower), PermissionDeniedError);
      } finally {
        await kv.close();
      }
      res = await https(s, TOKENS.reader)(`https://${fHttp}/v1/kv/greeting`, {
        method: "PUT",
        body: "nope",
      });
      assert.equal(res.status, 403);
      assert.equal((await res.json()).error, "permission_denied");
      r = await cli(["set", "greeting", "nope"], TOKENS.reader);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /PermissionDeniedError: .*needs role write/);
      r = await cli(["leader", "transfer", String(follower)], TOKENS.writer);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /needs role admin/);

      // A missing token: 401 over HTTP, exit 1 with one line from the CLI, refused by the
      // library; a wrong token likewise.
      res = await https(s)(`https://${fHttp}/v1/kv/greeting`);
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error, "unauthenticated");
      res = await https(s, "not-a-token")(`https://${fHttp}/v1/kv/greeting`);
      assert.equal(res.status, 401);
      await res.body?.cancel();
      r = await cli(["get", "greeting"]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /UnauthenticatedError: .*token/);
      await assert.rejects(
        Client.connect({
          endpoints: [c.nodes.get(leader)!.client],
          tls: { caCert: s.caPem },
          token: "wrong",
        }),
        UnauthenticatedError,
      );
      // /metrics and /healthz stay readable without a token; nothing changed by the refusals.
      res = await https(s)(`https://${fHttp}/healthz`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
      let metrics = "";
      for (const n of c.nodes.values()) {
        res = await https(s)(`https://${n.http}/metrics`);
        assert.equal(res.status, 200);
        metrics += await res.text();
      }
      assert.match(
        metrics,
        /gokv_request_errors_total\{op="\w+",status="permission_denied"\} [1-9]/,
      );
      r = await cli(["get", "greeting"], TOKENS.reader);
      assert.match(r.stdout, /Value: hi/);

      // The attack of the issue against the TLS peer port: refused, counted, nothing changed.
      await forge(c.nodes.get(follower)!.peer, leader, follower, await c.status(follower));
      await waitFor(
        async () => {
          const res = await https(s)(`https://${fHttp}/metrics`);
          return /gokv_peer_unauthenticated_connections_total\{reason="tls-handshake"\} [1-9]/.test(
            await res.text(),
          );
        },
        10_000,
        "the refused handshake counted",
      );
      r = await cli(["set", "after", "1"], TOKENS.writer);
      assert.equal(r.code, 0, r.stderr);
      for (const n of c.nodes.values()) {
        await waitFor(
          async () => {
            const res = await https(s, TOKENS.reader)(
              `https://${n.http}/v1/kv/after?consistency=serializable`,
            );
            return (await res.text()) === "1";
          },
          10_000,
          `node ${n.id} applies "after"`,
        );
        res = await https(s, TOKENS.reader)(`https://${n.http}/v1/kv/k?consistency=serializable`);
        assert.equal(res.status, 404, "no FORGED value anywhere");
        await res.body?.cancel();
      }

      // SIGHUP reloads the tokens file: a new token works, a removed one stops working.
      const fresh = "fresh-token-0123456789";
      await Deno.writeTextFile(
        s.tokens,
        `tokens:\n  - { name: ops, role: admin, hash: "${hashToken(TOKENS.admin)}" }\n` +
          `  - { name: fresh, role: read, hash: "${hashToken(fresh)}" }\n`,
      );
      for (const p of c.procs.values()) p.kill("SIGHUP");
      await waitFor(
        async () => {
          const res = await https(s, fresh)(`https://${fHttp}/v1/kv/greeting`);
          await res.body?.cancel();
          return res.status === 200;
        },
        10_000,
        "the new token after SIGHUP",
      );
      res = await https(s, TOKENS.reader)(`https://${fHttp}/v1/kv/greeting`);
      assert.equal(res.status, 401, "the removed token is refused");
      await res.body?.cancel();
    } finally {
      await c.stop();
      await s.close();
    }
  },
});

/** A GET with the given Host header over a raw connection; the whole response text. */
async function rawGet(addr: string, path: string, host: string): Promise<string> {
  const [hostname, port] = addr.split(":");
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      ),
    );
    let out = "";
    const buf = new Uint8Array(4096);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      out += new TextDecoder().decode(buf.subarray(0, n));
    }
    return out;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("a cross-site POST with text/plain and no token changes nothing; rebinding is refused", async () => {
  const c = await TestCluster.create({ size: 1, storage: "memory" });
  try {
    c.start(1);
    await c.waitLeader();
    const http = c.nodes.get(1)!.http;
    // What a page on another site can send without a preflight: a form-like POST.
    let res = await fetch(`http://${http}/v1/kv/victim`, {
      method: "POST",
      headers: { "content-type": "text/plain", origin: "http://evil.example" },
      body: "pwned",
    });
    assert.equal(res.status, 403);
    await res.body?.cancel();
    // The same without an Origin header (some browsers omit it) is refused too: no client header.
    res = await fetch(`http://${http}/v1/leader/transfer?id=1`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
    });
    assert.equal(res.status, 403);
    await res.body?.cancel();
    res = await fetch(`http://${http}/v1/members`, {
      method: "POST",
      headers: { "content-type": "text/plain", "x-gokv-client": "x" },
      body: JSON.stringify({ id: 9, peer: "1.2.3.4:1", client: "1.2.3.4:2", http: "1.2.3.4:3" }),
    });
    assert.equal(res.status, 400, "JSON needs application/json");
    await res.body?.cancel();
    // A DNS-rebound name is not this node's (fetch cannot set Host: a raw request).
    const raw = await rawGet(http, "/v1/kv/victim", "evil.example");
    assert.match(raw, /^HTTP\/1\.1 403/);
    assert.match(raw, /host_not_allowed/);
    assert.match(await rawGet(http, "/v1/kv/victim", "localhost"), /^HTTP\/1\.1 404/);
    // CORS is off: a preflight from another origin gets no allow header.
    res = await fetch(`http://${http}/v1/kv/victim`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example", "access-control-request-method": "PUT" },
    });
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    await res.body?.cancel();
    // Nothing was written; the CLI (and curl's PUT) still work.
    res = await fetch(`http://${http}/v1/kv/victim`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
    const r = await c.cli(["set", "victim", "ok"]);
    assert.equal(r.code, 0, r.stderr);
    res = await fetch(`http://${http}/v1/kv/victim`, { method: "PUT", body: "curl" });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const m = await (await fetch(`http://${http}/v1/members`)).json();
    assert.equal(m.members.length, 1);
  } finally {
    await c.stop();
  }
});

Deno.test("a node asked to listen on 0.0.0.0 without TLS and tokens exits 2 saying why", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = join(dir, "config.yaml");
    const p = () => freePort();
    await Deno.writeTextFile(
      config,
      `data_dir: ${JSON.stringify(join(dir, "data"))}\nstorage: memory\nnodes:\n` +
        `  - { id: 1, peer: 127.0.0.1:${p()}, client: 127.0.0.1:${p()}, http: 127.0.0.1:${p()},` +
        ` listen_client: 0.0.0.0:${p()} }\n`,
    );
    const r = await gokv(["server", "--config", config, "--id", "1"], { timeoutMs: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /refusing to listen beyond loopback/);
    assert.match(r.stderr, /client 0\.0\.0\.0:\d+ has no TLS and no tokens/);
    assert.match(r.stderr, /--insecure/);
    // With --insecure it starts (stopped as soon as it listens).
    const proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "server", "--config", config, "--id", "1", "--insecure"],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      await waitFor(
        async () => {
          const res = await fetch(
            `http://${(await Deno.readTextFile(config)).match(/http: ([\d.:]+)/)![1]}/healthz`,
          );
          await res.body?.cancel();
          return res.ok;
        },
        20_000,
        "the --insecure node",
      );
    } finally {
      proc.kill("SIGTERM");
      await proc.stderr.cancel();
      await proc.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cluster:secure starts the sample cluster with TLS and an admin token and says how to use them", async () => {
  const dir = await Deno.makeTempDir();
  const run = join(dir, "run");
  const script = join(ROOT, "scripts", "cluster.ts");
  try {
    const p = () => freePort();
    const config = join(dir, "config.yaml");
    await Deno.writeTextFile(
      config,
      `data_dir: ${JSON.stringify(join(dir, "data"))}\nstorage: memory\nnodes:\n` +
        [1, 2, 3].map((id) =>
          `  - { id: ${id}, peer: 127.0.0.1:${p()}, client: 127.0.0.1:${p()}, http: 127.0.0.1:${p()} }\n`
        ).join(""),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, "start", "--config", config, "--run-dir", run],
      env: { GOKV_SECURE: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    assert.match(text, /secured: TLS on every port/);
    assert.match(text, /https:\/\/127\.0\.0\.1:\d+\/ui/);
    assert.match(text, /GOKV_CACERT=.*GOKV_TOKEN=/);
    const env = {
      GOKV_CACERT: join(run, "secure", "ca.crt"),
      GOKV_TOKEN: (await Deno.readTextFile(join(run, "secure", "admin.token"))).trim(),
    };
    let r = await gokv(["set", "hello", "world", "--config", config], { env });
    assert.equal(r.code, 0, r.stderr);
    r = await gokv(["get", "hello", "--config", config], { env: { GOKV_CACERT: env.GOKV_CACERT } });
    assert.equal(r.code, 1, "no token: refused");
  } finally {
    await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, "stop", "--run-dir", run],
      stdout: "null",
      stderr: "null",
    }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "transport grpc with mutual TLS: a secured cluster replicates (no cluster secret)",
  sanitizeResources: false,
  fn: async () => {
    const s = await secured();
    const c = await TestCluster.create({
      storage: "memory",
      transport: "grpc",
      extraYaml: s.extraYaml.replace(/ {2}peer_secret_file: .*\n/, ""),
      statusFetch: (http) => https(s, TOKENS.admin)(`https://${http}/v1/status`),
    });
    try {
      c.startAll();
      await c.waitLeader();
      const r = await c.cli(["set", "g", "1", "--cacert", s.ca, "--token", TOKENS.writer]);
      assert.equal(r.code, 0, r.stderr);
      for (const n of c.nodes.values()) {
        await waitFor(
          async () => {
            const res = await https(s, TOKENS.reader)(
              `https://${n.http}/v1/kv/g?consistency=serializable`,
            );
            return (await res.text()) === "1";
          },
          15_000,
          `node ${n.id} applies over grpc + TLS`,
        );
      }
    } finally {
      await c.stop();
      await s.close();
    }
  },
});
