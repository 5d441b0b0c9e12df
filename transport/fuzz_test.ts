/**
 * Property and fuzz tests: the decoders only ever return a value or throw their typed error,
 * and never hang, whatever bytes they are given.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { ConfState, Entry, Message, SnapshotChunk } from "../raft/types.ts";
import { DecodeError, FrameError } from "./errors.ts";
import { decodeHello, encodeHello, encodeMessageFrame, FrameDecoder, FrameType } from "./frame.ts";
import { decodeMessage, encodeMessage } from "./message_codec.ts";

const u64 = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const bytes = fc.uint8Array({ maxLength: 64 });
const ids = fc.array(u64, { maxLength: 4 });
const conf: fc.Arbitrary<ConfState> = fc.record({
  voters: ids,
  votersOutgoing: ids,
  learners: ids,
  learnersNext: ids,
}, { noNullPrototype: true });
const entry: fc.Arbitrary<Entry> = fc.record({
  term: u64,
  index: u64,
  type: fc.integer({ min: 0, max: 1 }),
  data: bytes,
}, { noNullPrototype: true });
const chunk: fc.Arbitrary<SnapshotChunk> = fc.record({
  meta: fc.record({
    index: u64,
    term: u64,
    conf,
    memberContexts: fc.array(fc.record({ id: u64, context: bytes }, { noNullPrototype: true }), {
      minLength: 1,
      maxLength: 3,
    }),
  }, { noNullPrototype: true, requiredKeys: ["index", "term", "conf"] }),
  offset: fc.nat(1000),
  extra: fc.nat(1000),
  data: bytes,
  done: fc.boolean(),
}, { noNullPrototype: true }).map(({ extra, ...c }) => ({
  ...c,
  total: c.offset + c.data.length + extra,
}));
const msg: fc.Arbitrary<Message> = fc.record({
  type: fc.integer({ min: 0, max: 18 }),
  to: u64,
  from: u64,
  term: u64,
  logTerm: u64,
  index: u64,
  entries: fc.array(entry, { maxLength: 4 }),
  commit: u64,
  reject: fc.boolean(),
  rejectHint: u64,
  context: bytes,
  snapshot: fc.option(chunk, { nil: null }),
}, { noNullPrototype: true });

/** Decodes; a success must re-encode to the very same bytes (the encoding is canonical). */
function decodeOrTypedError(b: Uint8Array): void {
  try {
    const m = decodeMessage(b);
    assert.deepStrictEqual(encodeMessage(m), b);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
  }
}

/** Feeds `b` to a frame decoder in pieces; only frames or FrameError may come out. */
function framesOrTypedError(b: Uint8Array, cuts: number[]): number {
  const d = new FrameDecoder(4096);
  let frames = 0;
  let at = 0;
  try {
    for (const cut of [...cuts.map((c) => c % (b.length + 1)).sort((x, y) => x - y), b.length]) {
      if (cut < at) continue;
      d.push(b.subarray(at, cut));
      at = cut;
      for (let f = d.next(); f !== null; f = d.next()) {
        frames++;
        if (frames > b.length) throw new Error("decoder produced more frames than bytes");
        try {
          if (f.type === FrameType.Hello) decodeHello(f.payload);
          else decodeMessage(f.payload);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
        }
      }
    }
    d.finish();
  } catch (e) {
    if (!(e instanceof FrameError)) throw e;
  }
  return frames;
}

const mutation = fc.record({
  pos: fc.nat(),
  kind: fc.integer({ min: 0, max: 4 }),
  value: fc.integer({ min: 0, max: 255 }),
  len: fc.integer({ min: 1, max: 16 }),
});

function mutate(
  b: Uint8Array,
  muts: { pos: number; kind: number; value: number; len: number }[],
): Uint8Array {
  let out = b.slice();
  for (const { pos, kind, value, len } of muts) {
    const p = out.length === 0 ? 0 : pos % out.length;
    switch (kind) {
      case 0: // overwrite a byte
        if (out.length > 0) out[p] = value;
        break;
      case 1: // flip a bit
        if (out.length > 0) out[p] ^= 1 << (value & 7);
        break;
      case 2: // truncate
        out = out.slice(0, p);
        break;
      case 3: // insert bytes
        out = new Uint8Array([
          ...out.subarray(0, p),
          ...new Uint8Array(len).fill(value),
          ...out.subarray(p),
        ]);
        break;
      case 4: // set a 32-bit word to an extreme
        if (out.length >= p + 4) {
          new DataView(out.buffer).setUint32(p, value & 1 ? 0xffffffff : 0x7fffffff);
        }
        break;
    }
  }
  return out;
}

Deno.test("any message round-trips through the codec", () => {
  fc.assert(
    fc.property(msg, (m) => {
      assert.deepStrictEqual(decodeMessage(encodeMessage(m)), m);
    }),
    { numRuns: 500 },
  );
});

Deno.test("random bytes give a message or a DecodeError, nothing else", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), decodeOrTypedError), { numRuns: 2000 });
});

Deno.test("mutated encodings give a message or a DecodeError, nothing else", () => {
  fc.assert(
    fc.property(msg, fc.array(mutation, { minLength: 1, maxLength: 4 }), (m, muts) => {
      decodeOrTypedError(mutate(encodeMessage(m), muts));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("random byte streams give frames or a FrameError, nothing else", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.nat(), { maxLength: 5 }),
      (b, cuts) => {
        framesOrTypedError(b, cuts);
      },
    ),
    { numRuns: 2000 },
  );
  // Streams that start with a valid header keep the decoder past the magic check.
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.nat(), { maxLength: 5 }),
      (b, cuts) => {
        const s = new Uint8Array([0x47, 0x4b, 1, 2, ...b]);
        framesOrTypedError(s, cuts);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("mutated frame streams give frames or a FrameError, nothing else", () => {
  fc.assert(
    fc.property(
      fc.array(msg, { minLength: 1, maxLength: 3 }),
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 5 }),
      (ms, muts, cuts) => {
        const parts = [encodeHello({ from: 1, to: 2 }), ...ms.map((m) => encodeMessageFrame(m))];
        const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          stream.set(p, o);
          o += p.length;
        }
        assert.equal(framesOrTypedError(stream, cuts), parts.length);
        framesOrTypedError(mutate(stream, muts), cuts);
      },
    ),
    { numRuns: 1000 },
  );
});
