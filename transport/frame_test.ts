import assert from "node:assert/strict";
import { message, MessageType } from "../raft/types.ts";
import { DecodeError, EncodeError, FrameError } from "./errors.ts";
import {
  decodeHello,
  encodeFrame,
  encodeHello,
  encodeMessageFrame,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
} from "./frame.ts";
import { decodeMessage } from "./message_codec.ts";

function drain(d: FrameDecoder): Frame[] {
  const out: Frame[] = [];
  for (let f = d.next(); f !== null; f = d.next()) {
    out.push({ type: f.type, payload: f.payload.slice() });
  }
  return out;
}

function expectFrameError(bytes: Uint8Array, reason: FrameError["reason"], max?: number): void {
  const d = new FrameDecoder(max);
  d.push(bytes);
  assert.throws(() => drain(d), (e: unknown) => {
    assert.ok(e instanceof FrameError, `want FrameError, got ${e}`);
    assert.equal(e.reason, reason);
    return true;
  });
}

Deno.test("frames decode whether bytes arrive one at a time or all at once", () => {
  const m = message({ type: MessageType.Vote, from: 1, to: 2, term: 3 });
  const stream = new Uint8Array([
    ...encodeHello({ from: 1, to: 2 }),
    ...encodeMessageFrame(m),
    ...encodeFrame(FrameType.Message, new Uint8Array(70000)),
  ]);
  const whole = new FrameDecoder();
  whole.push(stream);
  const a = drain(whole);
  const bytewise = new FrameDecoder();
  const b: Frame[] = [];
  for (const byte of stream) {
    bytewise.push(new Uint8Array([byte]));
    b.push(...drain(bytewise));
  }
  bytewise.finish();
  assert.deepStrictEqual(a, b);
  assert.deepStrictEqual(a.map((f) => f.type), [
    FrameType.Hello,
    FrameType.Message,
    FrameType.Message,
  ]);
  assert.deepStrictEqual(decodeHello(a[0].payload), { from: 1, to: 2 });
  assert.deepStrictEqual(decodeMessage(a[1].payload), m);
  assert.equal(a[2].payload.length, 70000);
});

Deno.test("frame decoder refuses bad magic and version before the header is complete", () => {
  expectFrameError(new Uint8Array([0x47, 0x00]), "bad-magic");
  expectFrameError(new TextEncoder().encode("GET / HTTP/1.1\r\n"), "bad-magic");
  expectFrameError(new Uint8Array([0x47, 0x4b, 2]), "bad-version");
});

Deno.test("frame decoder refuses an unknown type, a huge length and a bad checksum", () => {
  const f = encodeMessageFrame(message({ type: MessageType.App }));
  const t = f.slice();
  t[3] = 9;
  expectFrameError(t, "bad-type");
  // Only the header of a 4 GiB frame: refused at once, nothing waits for the payload.
  const huge = f.slice(0, FRAME_HEADER_BYTES);
  new DataView(huge.buffer).setUint32(4, 0xffff_ffff);
  expectFrameError(huge, "too-large");
  expectFrameError(f, "too-large", 10);
  const c = f.slice();
  c[FRAME_HEADER_BYTES + 3] ^= 1;
  expectFrameError(c, "bad-checksum");
});

Deno.test("frame decoder reports a stream that ends inside a frame", () => {
  const f = encodeMessageFrame(message({ type: MessageType.App }));
  const d = new FrameDecoder();
  d.push(f.subarray(0, f.length - 1));
  assert.equal(d.next(), null);
  assert.throws(
    () => d.finish(),
    (e: unknown) => e instanceof FrameError && e.reason === "truncated",
  );
});

Deno.test("hello payloads are validated and oversized messages are not framed", () => {
  assert.throws(() => decodeHello(new Uint8Array(15)), DecodeError);
  const bad = new Uint8Array(16).fill(0xff);
  assert.throws(() => decodeHello(bad), DecodeError);
  assert.throws(() => encodeHello({ from: -1, to: 1 }), EncodeError);
  const big = message({ type: MessageType.App, context: new Uint8Array(1000) });
  assert.throws(() => encodeMessageFrame(big, 500), EncodeError);
});
