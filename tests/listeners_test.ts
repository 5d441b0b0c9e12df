/**
 * Listeners that never die and never hoard (issue 12), against real node processes started with
 * the unhandled-rejection tripwire (tests/tripwire.ts): accept loops survive running out of file
 * descriptors; half-sent frames, stalled bodies and oversized chunked bodies are dropped with the
 * node's memory bounded.
 */
import assert from "node:assert/strict";
import { TestCluster, waitFor } from "./harness.ts";
import { Client } from "../client/client.ts";

const enc = new TextEncoder();
const MIB = 1024 * 1024;

function hostPort(addr: string): { hostname: string; port: number } {
  const i = addr.lastIndexOf(":");
  return { hostname: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}

/** Resident set size of a process in bytes (Linux /proc). */
async function rss(pid: number): Promise<number> {
  const text = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(text);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Samples the peak RSS of `pid` until `stop()`. */
function rssPeak(pid: number): { stop: () => Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await rss(pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Resolves once the peer closed `conn` (read returns end of stream or fails). */
async function closedByPeer(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while ((await conn.read(buf)) !== null) { /* discard */ }
  } catch { /* reset: closed too */ }
}

async function connectAll(addr: string, n: number): Promise<Deno.TcpConn[]> {
  const tries = await Promise.allSettled(
    Array.from(
      { length: n },
      () => Deno.connect({ ...hostPort(addr), signal: AbortSignal.timeout(5_000) }),
    ),
  );
  return tries.filter((t) => t.status === "fulfilled").map((t) =>
    (t as PromiseFulfilledResult<Deno.TcpConn>).value
  );
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

async function assertNoTrip(c: TestCluster, id: number): Promise<void> {
  const p = c.procs.get(id)!;
  const exited = await Promise.race([
    p.status.then((s) => s.code),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)),
  ]);
  const log = await c.log(id);
  assert.equal(exited, undefined, `node ${id} exited:\n${log.slice(-2000)}`);
  assert.ok(!log.includes("UNHANDLED REJECTION"), log.slice(-2000));
}

async function serves(c: TestCluster, key: string): Promise<boolean> {
  const n = c.nodes.get(1)!;
  let kv: Client | undefined;
  try {
    kv = await Client.connect({ endpoints: [n.client], timeoutMs: 1_000, connectTimeoutMs: 500 });
    await kv.put(key, "v");
    const health = await fetch(`http://${n.http}/healthz`, { signal: AbortSignal.timeout(1_000) });
    const body = await health.json();
    const get = await fetch(`http://${n.http}/v1/kv/${key}`, {
      signal: AbortSignal.timeout(1_000),
    });
    await get.body?.cancel();
    return health.status === 200 && body.status === "ok" && get.status === 200;
  } catch {
    return false;
  } finally {
    await kv?.close();
  }
}

Deno.test("300 connections under ulimit -n 256: client and HTTP ports serve again within 5 s", async () => {
  const c = await TestCluster.create({
    size: 1,
    storage: "memory",
    tripwire: true,
    maxOpenFiles: 256,
  });
  try {
    c.startAll();
    await c.waitLeader();
    const n = c.nodes.get(1)!;
    assert.ok(await serves(c, "before"));
    for (const [name, addr] of [["client", n.client], ["http", n.http]] as const) {
      const conns = await connectAll(addr, 300);
      assert.ok(conns.length >= 256, `only ${conns.length} connections`);
      // The node runs out of descriptors: its accept loop fails with EMFILE (on the HTTP port
      // the connections it relays fail too, so they do not pile up: wait for the log).
      const pid = c.procs.get(1)!.pid;
      await waitFor(
        async () => {
          if (name === "http") {
            return /http (listener: accept failed|server stopped)/.test(await c.log(1));
          }
          let fds = 0;
          for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) fds++;
          return fds >= 250;
        },
        15_000,
        `node ${name} port out of descriptors`,
      ).catch(async (e) => {
        throw new Error(`${e.message}\n${(await c.log(1)).slice(-3000)}`);
      });
      closeAll(conns);
      const t0 = Date.now();
      await waitFor(() => serves(c, `after-${name}`), 5_000, `service after ${name} EMFILE`);
      assert.ok(Date.now() - t0 < 5_000);
      await assertNoTrip(c, 1);
    }
    const log = await c.log(1);
    assert.match(log, /client listener: accept failed/);
    assert.match(log, /http listener: accept failed/);
    assert.match(log, /listener: accepting again/);
  } finally {
    await c.stop();
  }
});

Deno.test("half-sent frames and stalled HTTP bodies are dropped at the timeouts, memory bounded", async () => {
  const c = await TestCluster.create({
    size: 1,
    storage: "memory",
    tripwire: true,
    extraYaml: "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n" +
      "limits:\n  idle_timeout_ms: 3000\n  request_timeout_ms: 1500\n",
  });
  const open: Deno.Conn[] = [];
  try {
    c.startAll();
    await c.waitLeader();
    const n = c.nodes.get(1)!;
    assert.ok(await serves(c, "warm"));
    const pid = c.procs.get(1)!.pid;
    const base = await rss(pid);
    const peak = rssPeak(pid);
    const writes: Promise<unknown>[] = [];
    const send = (conn: Deno.Conn, bytes: Uint8Array) =>
      writes.push(
        (async () => {
          let off = 0;
          while (off < bytes.length) off += await conn.write(bytes.subarray(off));
        })().catch(() => {}),
      );

    // 50 frames announcing 64 MiB, 1 MiB of each sent.
    const big = await connectAll(n.client, 50);
    const head64 = new Uint8Array(MIB);
    new DataView(head64.buffer).setUint32(0, 64 * MIB);
    for (const conn of big) send(conn, head64);
    // 20 frames of the largest allowed size, half sent.
    const half = await connectAll(n.client, 20);
    const head8 = new Uint8Array(4 * MIB);
    new DataView(head8.buffer).setUint32(0, 8 * MIB);
    head8[4] = 1; // Put
    for (const conn of half) send(conn, head8);
    // 20 HTTP bodies that stop after 1 MiB of a declared 8,000,000.
    const bodies = await connectAll(n.http, 20);
    const put = enc.encode(
      "PUT /v1/kv/stalled HTTP/1.1\r\nhost: localhost\r\ncontent-length: 8000000\r\n\r\n",
    );
    const body = new Uint8Array(put.length + MIB);
    body.set(put);
    for (const conn of bodies) send(conn, body);
    // And 20 connections that never send a byte.
    const silent = await connectAll(n.client, 10);
    silent.push(...await connectAll(n.http, 10));
    const all = [...big, ...half, ...bodies, ...silent];
    open.push(...all);
    assert.equal(all.length, 110);

    const t0 = Date.now();
    await Promise.race([
      Promise.all(all.map(closedByPeer)),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("connections not dropped within 15 s")), 15_000)
      ),
    ]);
    const tookMs = Date.now() - t0;
    const growth = (await peak.stop()) - base;
    assert.ok(growth < 64 * MIB, `RSS grew by ${(growth / MIB).toFixed(1)} MiB`);
    assert.ok(tookMs < 10_000, `dropped after ${tookMs} ms`);
    await Promise.all(writes);
    assert.ok(await serves(c, "after"));
    await assertNoTrip(c, 1);
    const log = await c.log(1);
    assert.match(log, /frame of 67108864 bytes exceeds/);
    assert.match(log, /closing http connection/);
  } finally {
    closeAll(open);
    await c.stop();
  }
});

Deno.test("a chunked 300 MB PUT is refused with 413 while it streams, memory bounded", async () => {
  const c = await TestCluster.create({ size: 1, storage: "memory", tripwire: true });
  try {
    c.startAll();
    await c.waitLeader();
    const n = c.nodes.get(1)!;
    assert.ok(await serves(c, "warm"));
    const pid = c.procs.get(1)!.pid;
    const base = await rss(pid);
    const peak = rssPeak(pid);
    const conn = await Deno.connect(hostPort(n.http));
    let response = "";
    const reading = (async () => {
      const buf = new Uint8Array(4096);
      const dec = new TextDecoder();
      try {
        for (let r = await conn.read(buf); r !== null; r = await conn.read(buf)) {
          response += dec.decode(buf.subarray(0, r));
        }
      } catch { /* reset after the answer */ }
    })();
    let sent = 0;
    const chunk = new Uint8Array(MIB + 32);
    const sizeLine = enc.encode(`${MIB.toString(16)}\r\n`);
    chunk.set(sizeLine);
    chunk.set(enc.encode("\r\n"), sizeLine.length + MIB);
    const frame = chunk.subarray(0, sizeLine.length + MIB + 2);
    try {
      await conn.write(
        enc.encode(
          "PUT /v1/kv/huge HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n",
        ),
      );
      while (sent < 300 * 1000 * 1000 && response === "") {
        let off = 0;
        while (off < frame.length) off += await conn.write(frame.subarray(off));
        sent += MIB;
      }
    } catch { /* the node closed the connection after refusing */ }
    await Promise.race([reading, new Promise((r) => setTimeout(r, 10_000))]);
    try {
      conn.close();
    } catch { /* closed */ }
    const growth = (await peak.stop()) - base;
    assert.match(response, /^HTTP\/1\.1 413/, response.slice(0, 200));
    assert.match(response, /"limit":"http_body_bytes"/);
    assert.ok(sent < 300 * 1000 * 1000, "refused before the whole body was sent");
    assert.ok(growth < 64 * MIB, `RSS grew by ${(growth / MIB).toFixed(1)} MiB`);
    assert.ok(await serves(c, "after"));
    await assertNoTrip(c, 1);
  } finally {
    await c.stop();
  }
});

Deno.test("grpc peer port under ulimit -n 256: after 300 connections a restarted peer connects again and catches up", async () => {
  // The gRPC transport's port runs the same accept loop as every other port: out of
  // descriptors it backs off and goes on (grpc-js's own node:net server stops accepting for
  // good after one EMFILE). Node F is killed and restarted after the flood: its answers to the
  // leader travel over a new connection to the leader's peer port, so F only catches up if the
  // leader accepts again.
  const c = await TestCluster.create({
    size: 3,
    storage: "lsm",
    transport: "grpc",
    tripwire: true,
    maxOpenFiles: 256,
  });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const f = [1, 2, 3].find((id) => id !== leader)!;
    const kv = await Client.connect({ endpoints: [c.nodes.get(leader)!.client], timeoutMs: 3_000 });
    try {
      await kv.put("before", "v");
      const conns = await connectAll(c.nodes.get(leader)!.peer, 300);
      assert.ok(conns.length >= 256, `only ${conns.length} connections`);
      await waitFor(
        async () => /peer listener: accept failed/.test(await c.log(leader)),
        15_000,
        "the leader's peer port out of descriptors",
      ).catch(async (e) => {
        throw new Error(`${e.message}\n${(await c.log(leader)).slice(-3000)}`);
      });
      await c.kill(f);
      closeAll(conns);
      c.start(f);
      const t0 = Date.now();
      await waitFor(
        async () => {
          try {
            await kv.put("after", String(Date.now()));
            const [l, s] = [await c.status(leader), await c.status(f)];
            return Number(s.appliedIndex) >= Number(l.commitIndex) - 1 &&
              Number(s.appliedIndex) > 0;
          } catch {
            return false;
          }
        },
        20_000,
        `node ${f} caught up through the leader's peer port`,
      ).catch(async (e) => {
        throw new Error(`${e.message}\n${(await c.log(leader)).slice(-3000)}`);
      });
      // Restart and catch-up of a node take a few seconds themselves on a loaded machine: the
      // bound is on service through the leader, which the peer port must not have stopped.
      const health = await fetch(`http://${c.nodes.get(leader)!.http}/healthz`);
      assert.equal(health.status, 200, await health.text());
      assert.ok(Date.now() - t0 < 20_000);
      await assertNoTrip(c, leader);
      assert.match(await c.log(leader), /peer listener: accepting again/);
    } finally {
      await kv.close();
    }
  } finally {
    await c.stop();
  }
});
