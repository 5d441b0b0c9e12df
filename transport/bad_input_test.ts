/**
 * Bad input on a peer port closes that one connection with a logged reason; the transport keeps
 * running and a well-behaved peer keeps exchanging messages meanwhile.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { type Message, message, MessageType } from "../raft/types.ts";
import {
  encodeFrame,
  encodeHello,
  encodeMessageFrame,
  FRAME_HEADER_BYTES,
  FrameType,
} from "./frame.ts";
import { GrpcTransport, RAFT_PROTO_PATH } from "./grpc.ts";
import { encodeMessage } from "./message_codec.ts";
import { parseAddress } from "./options.ts";
import { TcpTransport } from "./tcp.ts";
import { RecordingLogger, waitFor } from "./test_util.ts";

/** Writes `bytes` on a fresh connection and reports whether the server then closed it. */
async function rawSend(address: string, bytes: Uint8Array, keepOpen = true): Promise<boolean> {
  const { hostname, port } = parseAddress(address);
  const conn = await Deno.connect({ hostname, port });
  try {
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    if (!keepOpen) {
      await conn.closeWrite();
    }
    const buf = new Uint8Array(1024);
    const closed = (async () => {
      try {
        while ((await conn.read(buf)) !== null) { /* the server never writes on tcp */ }
      } catch { /* reset */ }
      return true;
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((r) => timer = setTimeout(() => r(false), 3000));
    const result = await Promise.race([closed, timeout]);
    clearTimeout(timer);
    if (!result) {
      conn.close();
      await closed;
    }
    return result;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A message frame whose payload is `payload` (valid checksum, whatever the payload). */
function rawMessageFrame(payload: Uint8Array): Uint8Array {
  return encodeFrame(FrameType.Message, payload);
}

Deno.test("tcp: bad bytes close only their own connection, with a logged reason", async () => {
  const log = new RecordingLogger();
  const got: Message[] = [];
  const b = new TcpTransport({ id: 2, listen: "127.0.0.1:0", peers: new Map(), logger: log });
  await b.start((m) => got.push(m));
  const unreachable: number[] = [];
  const a = new TcpTransport({ id: 1, listen: "127.0.0.1:0", peers: new Map([[2, b.address]]) });
  await a.start((m) => m.type === MessageType.Unreachable && unreachable.push(m.from));
  let seq = 0;
  const exchange = async () => {
    const i = ++seq;
    a.send([message({ type: MessageType.Heartbeat, from: 1, to: 2, commit: i })]);
    await waitFor(() => got.some((m) => m.commit === i), 3000, `good message ${i}`);
  };
  try {
    await exchange();
    const hello = encodeHello({ from: 7, to: 2 });
    const valid = message({ type: MessageType.App, from: 7, to: 2, term: 1 });
    const badType = encodeMessage(valid);
    badType[0] = 200;
    const huge = encodeMessageFrame(valid).slice(0, FRAME_HEADER_BYTES);
    new DataView(huge.buffer).setUint32(4, 0xffff_fff0);
    const wrongVersion = encodeMessageFrame(valid);
    wrongVersion[2] = 9;
    const badCrc = encodeMessageFrame(valid);
    badCrc[badCrc.length - 1] ^= 0xff;
    const cases: [string, Uint8Array, string][] = [
      ["garbage", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "bad-magic"],
      ["huge length", huge, "too-large"],
      ["wrong version", wrongVersion, "bad-version"],
      ["bad checksum", concat(hello, badCrc), "bad-checksum"],
      ["message before hello", encodeMessageFrame(valid), "expected-hello"],
      ["hello for another node", encodeHello({ from: 7, to: 3 }), "wrong-node"],
      ["second hello", concat(hello, hello), "duplicate-hello"],
      ["invalid enum in a well-formed frame", concat(hello, rawMessageFrame(badType)), "bad-enum"],
      [
        "trailing bytes in a well-formed frame",
        concat(hello, rawMessageFrame(concat(encodeMessage(valid), new Uint8Array(1)))),
        "trailing-bytes",
      ],
      [
        "message for another node",
        concat(hello, encodeMessageFrame({ ...valid, to: 3 })),
        "wrong-node",
      ],
      [
        "sender differs from hello",
        concat(hello, encodeMessageFrame({ ...valid, from: 8 })),
        "wrong-sender",
      ],
      [
        "local message kind",
        concat(hello, encodeMessageFrame({ ...valid, type: MessageType.Hup })),
        "local-message",
      ],
    ];
    for (const [name, bytes, reason] of cases) {
      const before = log.warnings.length;
      assert.ok(await rawSend(b.address, bytes), `${name}: connection not closed`);
      await waitFor(() => log.warnings.length > before, 3000, `${name}: warning`);
      assert.equal(log.warnings.at(-1)!.fields?.reason, reason, name);
      await exchange();
    }
    // A truncated frame is noticed when its sender hangs up.
    const before = log.warnings.length;
    const full = encodeMessageFrame(valid);
    await rawSend(b.address, concat(hello, full.subarray(0, full.length - 3)), false);
    await waitFor(() => log.warnings.length > before, 3000, "truncated warning");
    assert.equal(log.warnings.at(-1)!.fields?.reason, "truncated");
    await exchange();
    assert.equal(b.stats.rejectedConnections, cases.length + 1);
    // The good peer's connection was never disturbed and no bad message was delivered.
    assert.deepStrictEqual(unreachable, []);
    assert.ok(got.every((m) => m.from === 1 && m.type === MessageType.Heartbeat));
    assert.equal(got.length, seq);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("grpc: garbage and invalid messages are refused while a good peer keeps working", async () => {
  const log = new RecordingLogger();
  const got: Message[] = [];
  const b = new GrpcTransport({ id: 2, listen: "127.0.0.1:0", peers: new Map(), logger: log });
  await b.start((m) => got.push(m));
  const a = new GrpcTransport({ id: 1, listen: "127.0.0.1:0", peers: new Map([[2, b.address]]) });
  await a.start(() => {});
  let seq = 0;
  const exchange = async () => {
    const i = ++seq;
    a.send([message({ type: MessageType.Heartbeat, from: 1, to: 2, commit: i })]);
    await waitFor(() => got.some((m) => m.commit === i), 3000, `good message ${i}`);
  };
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(RAFT_PROTO_PATH, { longs: Number }));
  // deno-lint-ignore no-explicit-any
  const Raft = (pkg as any).gokv.raft.v1.Raft;
  const raw = new Raft(b.address, grpc.credentials.createInsecure());
  try {
    await exchange();
    const garbage = new TextEncoder().encode("garbage garbage garbage\r\n\r\n");
    assert.ok(await rawSend(b.address, garbage));
    await waitFor(() => b.stats.rejectedConnections === 1, 3000, "garbage warning");
    assert.equal(log.warnings.at(-1)!.fields?.reason, "http2");
    await exchange();
    const tcpFrame = encodeMessageFrame(message({ type: MessageType.App, to: 2 }));
    assert.ok(await rawSend(b.address, tcpFrame));
    await waitFor(() => b.stats.rejectedConnections === 2, 3000, "tcp-frame warning");
    await exchange();
    const call = (msg: object) =>
      new Promise<grpc.ServiceError | null>((r) =>
        raw.Send({ messages: [msg] }, (e: grpc.ServiceError | null) => r(e))
      );
    const bad: [object, string][] = [
      [{ type: 99, to: 2, from: 7 }, "bad-enum"],
      [{ type: MessageType.App, to: 2, from: 7, entries: [{ type: 5 }] }, "bad-enum"],
      [{ type: MessageType.App, to: 3, from: 7 }, "wrong-node"],
      [{ type: MessageType.Hup, to: 2, from: 7 }, "local-message"],
      [{
        type: MessageType.App,
        to: 2,
        from: 7,
        snapshot: { meta: { conf: {} }, offset: 5, total: 1 },
      }, "bad-snapshot"],
    ];
    for (const [msg, reason] of bad) {
      const err = await call(msg);
      assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, reason);
      assert.equal(log.warnings.at(-1)!.fields?.reason, reason);
      await exchange();
    }
    assert.equal(b.stats.rejectedCalls, bad.length);
    assert.ok(got.every((m) => m.from === 1));
  } finally {
    raw.close();
    await a.close();
    await b.close();
  }
});
