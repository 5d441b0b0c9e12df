import assert from "node:assert/strict";
import { type Message, message, MessageType } from "../raft/types.ts";
import { formatAddress, parseAddress } from "./options.ts";
import { AddressError } from "./errors.ts";
import { encodeHello, encodeMessageFrame } from "./frame.ts";
import { TcpTransport } from "./tcp.ts";
import { RecordingLogger, waitFor } from "./test_util.ts";

const hb = (i: number) => message({ type: MessageType.Heartbeat, from: 1, to: 2, commit: i });

Deno.test("tcp: a full per-peer queue drops the excess instead of blocking", async () => {
  const got: Message[] = [];
  const b = new TcpTransport({ id: 2, listen: "127.0.0.1:0", peers: new Map() });
  await b.start((m) => got.push(m));
  const a = new TcpTransport({
    id: 1,
    listen: "127.0.0.1:0",
    peers: new Map([[2, b.address]]),
    queueMessages: 10,
  });
  try {
    a.send(Array.from({ length: 1000 }, (_, i) => hb(i)));
    assert.equal(a.stats.dropped, 990);
    await waitFor(() => got.length >= 10, 3000, "queued messages");
    assert.deepStrictEqual(got.map((m) => m.commit), Array.from({ length: 10 }, (_, i) => i));
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("tcp: a frame above the receiver's maximum closes that connection, then traffic resumes", async () => {
  const log = new RecordingLogger();
  const got: Message[] = [];
  const b = new TcpTransport({
    id: 2,
    listen: "127.0.0.1:0",
    peers: new Map(),
    logger: log,
    maxFrameBytes: 64 * 1024,
  });
  await b.start((m) => got.push(m));
  const a = new TcpTransport({
    id: 1,
    listen: "127.0.0.1:0",
    peers: new Map([[2, b.address]]),
    reconnectMaxMs: 50,
  });
  try {
    a.send([message({ type: MessageType.App, from: 1, to: 2, context: new Uint8Array(100_000) })]);
    await waitFor(
      () => log.warnings.some((w) => w.fields?.reason === "too-large"),
      3000,
      "too-large warning",
    );
    let i = 0;
    await waitFor(
      () => {
        a.send([hb(i++)]);
        return got.length > 0;
      },
      5000,
      "traffic after reconnect",
    );
    assert.ok(got.every((m) => m.type === MessageType.Heartbeat));
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("tcp: messages that cannot be encoded are dropped with a warning, not thrown", async () => {
  const log = new RecordingLogger();
  const a = new TcpTransport({
    id: 1,
    listen: "127.0.0.1:0",
    peers: new Map([[2, "127.0.0.1:1"]]),
    logger: log,
    maxFrameBytes: 1000,
  });
  try {
    a.send([
      { ...hb(1), term: -1 },
      message({ type: MessageType.App, from: 1, to: 2, context: new Uint8Array(2000) }),
    ]);
    assert.equal(log.warnings.length, 2);
    assert.equal(a.stats.dropped, 2);
  } finally {
    await a.close();
  }
});

Deno.test("tcp: a peer that never listens is reported unreachable, repeatedly with backoff", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = formatAddress("127.0.0.1", probe.addr.port);
  probe.close();
  const reports: number[] = [];
  const a = new TcpTransport({
    id: 1,
    listen: "127.0.0.1:0",
    peers: new Map([[2, dead]]),
    reconnectMinMs: 5,
    reconnectMaxMs: 20,
  });
  await a.start((m) => m.type === MessageType.Unreachable && reports.push(Date.now()));
  try {
    await waitFor(
      () => {
        a.send([hb(1)]);
        return reports.length >= 3;
      },
      3000,
      "three reports",
    );
    assert.ok(a.stats.dropped >= 3);
  } finally {
    await a.close();
  }
});

Deno.test("addresses parse as host:port and [v6]:port", () => {
  assert.deepStrictEqual(parseAddress("127.0.0.1:80"), { hostname: "127.0.0.1", port: 80 });
  assert.deepStrictEqual(parseAddress("[::1]:7000"), { hostname: "::1", port: 7000 });
  assert.deepStrictEqual(parseAddress("node-1.local:0"), { hostname: "node-1.local", port: 0 });
  assert.equal(formatAddress("::1", 5), "[::1]:5");
  for (const bad of ["", "host", ":80", "h:99999", "h:x", "::1:80"]) {
    assert.throws(() => parseAddress(bad), AddressError, bad);
  }
});

Deno.test("tcp: a frame left half-sent is dropped with its connection after the stall timeout", async () => {
  const log = new RecordingLogger();
  const b = new TcpTransport({
    id: 2,
    listen: "127.0.0.1:0",
    peers: new Map(),
    logger: log,
    stallTimeoutMs: 100,
  });
  await b.start(() => {});
  const { hostname, port } = parseAddress(b.address);
  const conn = await Deno.connect({ hostname, port });
  try {
    const frame = encodeMessageFrame(hb(1));
    await conn.write(concatBytes(encodeHello({ from: 1, to: 2 }), frame.subarray(0, 20)));
    const t0 = Date.now();
    // Bounded wait: a server that never closes the connection fails the test, not hangs it.
    let expired = false;
    const deadline = setTimeout(() => {
      expired = true;
      conn.close();
    }, 10_000);
    const n = await conn.read(new Uint8Array(8)).catch(() => null);
    clearTimeout(deadline);
    assert.equal(expired, false, "server did not close the silent connection within 10 s");
    assert.equal(n, null, "server closed the connection");
    assert.ok(Date.now() - t0 >= 80);
    await waitFor(() => log.warnings.length > 0, 2000, "warning");
    assert.equal(log.warnings[0].fields?.reason, "truncated");
  } finally {
    conn.close();
    await b.close();
  }
});

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("tcp: a connection that never says Hello is closed after the stall timeout", async () => {
  const log = new RecordingLogger();
  const b = new TcpTransport({
    id: 2,
    listen: "127.0.0.1:0",
    peers: new Map(),
    logger: log,
    stallTimeoutMs: 100,
  });
  await b.start(() => {});
  const { hostname, port } = parseAddress(b.address);
  const conn = await Deno.connect({ hostname, port });
  try {
    // Bounded wait: a server that never closes the connection fails the test, not hangs it.
    let expired = false;
    const deadline = setTimeout(() => {
      expired = true;
      conn.close();
    }, 10_000);
    const n = await conn.read(new Uint8Array(8)).catch(() => null);
    clearTimeout(deadline);
    assert.equal(expired, false, "server did not close the silent connection within 10 s");
    assert.equal(n, null, "server closed the connection");
    await waitFor(() => log.warnings.length > 0, 2000, "warning");
    assert.equal(log.warnings[0].fields?.reason, "expected-hello");
  } finally {
    try {
      conn.close();
    } catch { /* closed by the deadline */ }
    await b.close();
  }
});

Deno.test("tcp: start rejects (never throws) on a bad address or a port in use", async () => {
  const a = new TcpTransport({ id: 1, listen: "127.0.0.1:0", peers: new Map() });
  await a.start(() => {});
  const b = new TcpTransport({ id: 2, listen: a.address, peers: new Map() });
  const c = new TcpTransport({ id: 3, listen: "nonsense", peers: new Map() });
  try {
    const pb = b.start(() => {});
    const pc = c.start(() => {});
    await assert.rejects(pb, Deno.errors.AddrInUse);
    await assert.rejects(pc, AddressError);
  } finally {
    await a.close();
    await b.close();
    await c.close();
  }
});
