import assert from "node:assert/strict";
import * as protoLoader from "@grpc/proto-loader";
import { type Message, message, MessageType } from "../raft/types.ts";
import { GrpcTransport, PROTO_OPTIONS, RAFT_PROTO_PATH } from "./grpc.ts";
import { RAFT_PROTO_JSON } from "./raft_proto.ts";
import { waitFor } from "./test_util.ts";

Deno.test("grpc: the embedded descriptor describes exactly transport/raft.proto", () => {
  const fromFile = protoLoader.loadSync(RAFT_PROTO_PATH, PROTO_OPTIONS);
  const embedded = protoLoader.fromJSON(
    RAFT_PROTO_JSON as Parameters<typeof protoLoader.fromJSON>[0],
    PROTO_OPTIONS,
  );
  assert.deepStrictEqual(Object.keys(embedded).sort(), Object.keys(fromFile).sort());
  for (const [name, def] of Object.entries(fromFile)) {
    const other = embedded[name];
    if ("type" in def) {
      assert.deepStrictEqual(JSON.stringify(other.type), JSON.stringify(def.type), name);
    } else {
      for (const [method, m] of Object.entries(def)) {
        // deno-lint-ignore no-explicit-any
        const o = (other as any)[method];
        assert.deepStrictEqual(
          [o.path, o.requestStream, o.responseStream],
          [m.path, m.requestStream, m.responseStream],
          `${name}.${method}`,
        );
      }
    }
  }
});

Deno.test("grpc: a snapshot stream outlasts a per-call timeout far shorter than the transfer", async () => {
  const got: Message[] = [];
  const b = new GrpcTransport({ id: 2, listen: "127.0.0.1:0", peers: new Map() });
  await b.start((m) => got.push(m));
  const a = new GrpcTransport({
    id: 1,
    listen: "127.0.0.1:0",
    peers: new Map([[2, b.address]]),
    callTimeoutMs: 5,
  });
  try {
    const chunk = 1024 * 1024;
    const total = 16 * chunk;
    const conf = { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [] };
    const msgs = [];
    for (let off = 0; off < total; off += chunk) {
      msgs.push(message({
        type: MessageType.Snap,
        from: 1,
        to: 2,
        snapshot: {
          meta: { index: 9, term: 2, conf },
          offset: off,
          total,
          data: new Uint8Array(chunk).fill(off / chunk),
          done: off + chunk === total,
        },
      }));
    }
    const t0 = performance.now();
    a.send(msgs);
    await waitFor(() => got.length === msgs.length, 20000, "all chunks");
    assert.ok(performance.now() - t0 > 5, "transfer took longer than the call timeout");
    assert.deepStrictEqual(got.map((m) => m.snapshot!.data[0]), msgs.map((_, i) => i));
    assert.equal(a.stats.dropped, 0);
  } finally {
    await a.close();
    await b.close();
  }
});

/** A TCP proxy that parses the HTTP/2 frames going each way and records their types. */
class FrameSpy {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  /** Frame types seen client->server and server->client. */
  readonly up: number[] = [];
  readonly down: number[] = [];
  open = 0;
  readonly #tasks: Promise<void>[] = [];
  readonly #conns: Deno.Conn[] = [];

  constructor(readonly target: string) {
    this.#tasks.push(this.#accept());
  }

  get address(): string {
    return `127.0.0.1:${this.listener.addr.port}`;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let c: Deno.Conn;
      try {
        c = await this.listener.accept();
      } catch {
        return;
      }
      const [hostname, port] = this.target.split(":");
      const s = await Deno.connect({ hostname, port: Number(port) });
      this.#conns.push(c, s);
      this.open++;
      let done = 0;
      const end = () => {
        if (++done === 2) this.open--;
      };
      this.#tasks.push(this.#pipe(c, s, this.up, 24).finally(end));
      this.#tasks.push(this.#pipe(s, c, this.down, 0).finally(end));
    }
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, types: number[], skip: number): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        const all = new Uint8Array(pending.length + n);
        all.set(pending);
        all.set(chunk, pending.length);
        let o = 0;
        if (skip > 0) {
          const k = Math.min(skip, all.length);
          skip -= k;
          o = k;
        }
        while (skip === 0 && all.length - o >= 9) {
          const len = (all[o] << 16) | (all[o + 1] << 8) | all[o + 2];
          if (all.length - o < 9 + len) break;
          types.push(all[o + 3]);
          o += 9 + len;
        }
        pending = all.slice(o);
        let w = 0;
        while (w < n) w += await to.write(chunk.subarray(w));
      }
    } catch { /* closed */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await Promise.all(this.#tasks);
  }
}

const GOAWAY = 7;

Deno.test("grpc: closing either side never sends an HTTP/2 GOAWAY (Deno nghttp2 crash guard)", async () => {
  const got: Message[] = [];
  const b = new GrpcTransport({ id: 2, listen: "127.0.0.1:0", peers: new Map() });
  await b.start((m) => got.push(m));
  const spy = new FrameSpy(b.address);
  try {
    // The client side closes: nothing but a TCP close reaches the server.
    const a = new GrpcTransport({
      id: 1,
      listen: "127.0.0.1:0",
      peers: new Map([[2, spy.address]]),
    });
    a.send([message({ type: MessageType.Heartbeat, from: 1, to: 2, commit: 1 })]);
    await waitFor(() => got.length === 1, 5000, "first heartbeat");
    await a.close();
    await waitFor(() => spy.open === 0, 5000, "connection closed");
    assert.ok(spy.up.length > 0 && !spy.up.includes(GOAWAY), `client sent ${spy.up}`);
    // The server side closes: nothing but a TCP close reaches the client.
    const a2 = new GrpcTransport({
      id: 1,
      listen: "127.0.0.1:0",
      peers: new Map([[2, spy.address]]),
    });
    a2.send([message({ type: MessageType.Heartbeat, from: 1, to: 2, commit: 2 })]);
    await waitFor(() => got.length === 2, 5000, "second heartbeat");
    await b.close();
    await waitFor(() => spy.open === 0, 5000, "connection closed");
    assert.ok(spy.down.length > 0 && !spy.down.includes(GOAWAY), `server sent ${spy.down}`);
    await a2.close();
  } finally {
    await b.close();
    await spy.close();
  }
});

Deno.test("grpc mutual TLS: good certificates deliver; another CA, an expired one or another id are refused", async () => {
  const { issueCert, makeCa } = await import("../scripts/tls_certs.ts");
  const dir = await Deno.makeTempDir();
  const open: GrpcTransport[] = [];
  try {
    const ca = await makeCa(dir, "ca");
    const other = await makeCa(dir, "other");
    const read = async (c: { cert: string; key: string }) => ({
      cert: await Deno.readTextFile(c.cert),
      key: await Deno.readTextFile(c.key),
      ca: await Deno.readTextFile(ca.cert),
    });
    const n2 = await read(await issueCert(dir, ca, "node-2"));
    const cases = [
      ["good", await read(await issueCert(dir, ca, "node-1")), true],
      ["another CA", await read(await issueCert(dir, other, "node-1")), false],
      ["expired", await read(await issueCert(dir, ca, "node-1", undefined, -1)), false],
      ["another id", await read(await issueCert(dir, ca, "node-3")), false],
    ] as const;
    for (const [name, tls, ok] of cases) {
      const got: Message[] = [];
      const b = new GrpcTransport({
        id: 2,
        listen: "127.0.0.1:0",
        peers: new Map(),
        security: { tls: n2 },
      });
      open.push(b);
      await b.start((m) => got.push(m));
      const a = new GrpcTransport({
        id: 1,
        listen: "127.0.0.1:0",
        peers: new Map([[2, b.address]]),
        security: { tls },
        reportUnreachable: false,
      });
      open.push(a);
      await a.start(() => {});
      const hb = message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1 });
      if (ok) {
        await waitFor(
          () => {
            a.send([hb]);
            return got.length > 0;
          },
          10_000,
          `${name} certificate delivers`,
        );
      } else {
        const deadline = Date.now() + 1500;
        while (Date.now() < deadline) {
          a.send([hb]);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(got.length, 0, `${name} certificate refused`);
      }
      await a.close();
      await b.close();
    }
  } finally {
    for (const t of open) await t.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Resolves true once the other side closed `conn` (end of stream or reset), false after `ms`. */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, ms);
  let byPeer = false;
  try {
    const buf = new Uint8Array(1024);
    while ((await conn.read(buf)) !== null) { /* discard */ }
    byPeer = true;
  } catch (e) {
    byPeer = !(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted);
  } finally {
    clearTimeout(timer);
  }
  return byPeer;
}

Deno.test("grpc: the peer port caps connections, closes silent ones and still serves peers", async () => {
  const got: Message[] = [];
  const b = new GrpcTransport({
    id: 2,
    listen: "127.0.0.1:0",
    peers: new Map(),
    maxConnections: 2,
    stallTimeoutMs: 300,
  });
  await b.start((m) => got.push(m));
  const [hostname, port] = [b.address.split(":")[0], Number(b.address.split(":")[1])];
  const open: Deno.Conn[] = [];
  try {
    assert.equal((b as { problem?: string }).problem, undefined);
    // Two silent connections fill the cap; a third is closed at once.
    open.push(await Deno.connect({ hostname, port }), await Deno.connect({ hostname, port }));
    await new Promise((r) => setTimeout(r, 50)); // let the loop take both
    const third = await Deno.connect({ hostname, port });
    open.push(third);
    assert.ok(await closedWithin(third, 250), "a connection over the cap was kept");
    // The silent ones are closed at the stall timeout (300 ms), freeing the cap for a peer.
    assert.ok(await closedWithin(open[0], 3_000), "a silent connection was kept");
    assert.ok(await closedWithin(open[1], 3_000), "a silent connection was kept");
    const a = new GrpcTransport({ id: 1, listen: "127.0.0.1:0", peers: new Map([[2, b.address]]) });
    try {
      await a.start(() => {});
      a.send([message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1 })]);
      await waitFor(() => got.length === 1, 5_000, "a heartbeat through the freed port");
    } finally {
      await a.close();
    }
  } finally {
    for (const c of open) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await b.close();
  }
});
