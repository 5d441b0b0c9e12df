import assert from "node:assert/strict";
import { EntryType, type Message, message, MessageType } from "../raft/types.ts";
import { DecodeError, EncodeError } from "./errors.ts";
import {
  decodeMessage,
  encodedMessageSize,
  encodeMessage,
  MESSAGE_FIXED_BYTES,
} from "./message_codec.ts";

function full(): Message {
  return message({
    type: MessageType.Snap,
    to: 2,
    from: 1,
    term: 2 ** 53 - 1,
    logTerm: 4,
    index: 2 ** 33 + 1,
    commit: 77,
    reject: true,
    rejectHint: 5,
    context: new Uint8Array([1, 2]),
    entries: [
      { term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array([7]) },
      { term: 1, index: 2, type: EntryType.ConfChange, data: new Uint8Array(0) },
    ],
    snapshot: {
      meta: {
        index: 10,
        term: 2,
        conf: { voters: [1, 2], votersOutgoing: [3], learners: [], learnersNext: [4] },
        memberContexts: [{ id: 4, context: new Uint8Array([1, 4, 4]) }],
      },
      offset: 3,
      total: 8,
      data: new Uint8Array([9, 9, 9]),
      done: true,
    },
  });
}

function expectDecodeError(bytes: Uint8Array, reason: DecodeError["reason"]): void {
  assert.throws(() => decodeMessage(bytes), (e: unknown) => {
    assert.ok(e instanceof DecodeError, `want DecodeError, got ${e}`);
    assert.equal(e.reason, reason);
    return true;
  });
}

Deno.test("message codec round-trips every field", () => {
  const m = full();
  const b = encodeMessage(m);
  assert.equal(b.length, encodedMessageSize(m));
  assert.deepStrictEqual(decodeMessage(b), m);
  const empty = message({ type: MessageType.Heartbeat });
  assert.equal(encodeMessage(empty).length, MESSAGE_FIXED_BYTES);
  assert.deepStrictEqual(decodeMessage(encodeMessage(empty)), empty);
});

Deno.test("decoded byte fields are copies, not views of the input", () => {
  const b = encodeMessage(full());
  const m = decodeMessage(b);
  b.fill(0);
  assert.deepStrictEqual(m, full());
});

Deno.test("decoded entries' data are views of one copy of the entries alone (not of the input or the snapshot chunk)", () => {
  const entries = [1, 0, 300, 5].map((n, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.Normal,
    data: new Uint8Array(n).fill(i + 1),
  }));
  const m = message({ ...full(), entries });
  const b = encodeMessage(m);
  const got = decodeMessage(b);
  b.fill(0);
  assert.deepStrictEqual(got, m);
  const bufs = new Set(got.entries.filter((e) => e.data.length > 0).map((e) => e.data.buffer));
  assert.equal(bufs.size, 1);
  const [buf] = bufs;
  assert.notEqual(buf, got.snapshot!.data.buffer);
  assert.ok(buf.byteLength < b.length - got.snapshot!.data.length, `${buf.byteLength}`);
});

Deno.test("message decoder refuses every truncation with a DecodeError", () => {
  const b = encodeMessage(full());
  for (let n = 0; n < b.length; n++) {
    assert.throws(() => decodeMessage(b.subarray(0, n)), DecodeError, `prefix ${n}`);
  }
});

Deno.test("message decoder refuses trailing bytes", () => {
  const b = encodeMessage(full());
  const longer = new Uint8Array(b.length + 1);
  longer.set(b);
  expectDecodeError(longer, "trailing-bytes");
});

Deno.test("message decoder refuses out-of-range enums, flags and integers", () => {
  const base = encodeMessage(
    message({
      type: MessageType.App,
      entries: [{ term: 1, index: 1, type: 0, data: new Uint8Array(0) }],
    }),
  );
  const mut = (f: (b: Uint8Array, dv: DataView) => void) => {
    const b = base.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  expectDecodeError(mut((b) => b[0] = 19), "bad-enum");
  expectDecodeError(mut((b) => b[1] = 8), "bad-flags");
  expectDecodeError(mut((b) => b[1] = 4), "bad-flags"); // member contexts without a snapshot
  expectDecodeError(mut((_, dv) => dv.setUint32(18, 0x20_0000)), "bad-integer"); // term hi word
  expectDecodeError(mut((b) => b[MESSAGE_FIXED_BYTES + 16] = 2), "bad-enum"); // entry type
  expectDecodeError(mut((_, dv) => dv.setUint32(58, 0xffff_ffff)), "bad-length"); // context
  expectDecodeError(mut((_, dv) => dv.setUint32(62, 0xffff_ffff)), "bad-count"); // entry count
});

Deno.test("message decoder refuses a bad snapshot chunk", () => {
  const m = message({
    type: MessageType.Snap,
    snapshot: {
      meta: {
        index: 1,
        term: 1,
        conf: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [] },
      },
      offset: 0,
      total: 2,
      data: new Uint8Array([1, 2]),
      done: true,
    },
  });
  const b = encodeMessage(m);
  const dv = new DataView(b.buffer);
  const snapAt = MESSAGE_FIXED_BYTES;
  const totalAt = snapAt + 16 + 4 + 8 + 12 + 8;
  const doneAt = totalAt + 8;
  const t = b.slice();
  new DataView(t.buffer).setUint32(totalAt + 4, 1); // total 1 < data length 2
  expectDecodeError(t, "bad-snapshot");
  const d = b.slice();
  d[doneAt] = 2;
  expectDecodeError(d, "bad-enum");
  const c = b.slice();
  new DataView(c.buffer).setUint32(snapAt + 16, 0x1000_0000); // voters count
  expectDecodeError(c, "bad-count");
  assert.equal(dv.getUint32(snapAt + 16), 1);
});

Deno.test("snapshot member contexts: flag bit 2, present only when there are some", () => {
  const conf = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [] };
  const chunk = (memberContexts?: { id: number; context: Uint8Array }[]) =>
    message({
      type: MessageType.Snap,
      snapshot: {
        meta: memberContexts
          ? { index: 1, term: 1, conf, memberContexts }
          : { index: 1, term: 1, conf },
        offset: 0,
        total: 1,
        data: new Uint8Array([1]),
        done: true,
      },
    });
  // Without contexts (and with an empty list) the bytes are those of the format before them.
  const plain = encodeMessage(chunk());
  assert.equal(plain[1], 2);
  assert.deepStrictEqual(encodeMessage(chunk([])), plain);
  assert.equal(decodeMessage(plain).snapshot!.meta.memberContexts, undefined);
  const m = chunk([{ id: 2, context: new Uint8Array([7]) }, { id: 9, context: new Uint8Array(0) }]);
  const b = encodeMessage(m);
  assert.equal(b[1], 2 | 4);
  assert.equal(b.length, plain.length + 4 + 12 + 1 + 12);
  assert.deepStrictEqual(decodeMessage(b), m);
  // The flag with a zero count is not canonical; the flag without a snapshot is refused.
  const zero = new Uint8Array(plain.length + 4);
  zero.set(plain.subarray(0, MESSAGE_FIXED_BYTES + 16 + 4 + 8 + 12));
  zero.set(plain.subarray(MESSAGE_FIXED_BYTES + 16 + 4 + 8 + 12), MESSAGE_FIXED_BYTES + 40 + 4);
  zero[1] = 2 | 4;
  expectDecodeError(zero, "bad-count");
  const noSnap = encodeMessage(message({ type: MessageType.App }));
  noSnap[1] = 4;
  expectDecodeError(noSnap, "bad-flags");
});

Deno.test("message encoder refuses fields it cannot represent", () => {
  const bad: [keyof Message, unknown][] = [
    ["term", -1],
    ["index", 1.5],
    ["commit", 2 ** 53],
    ["to", Number.NaN],
    ["type", 99],
  ];
  for (const [k, v] of bad) {
    const m = { ...message({ type: MessageType.App }), [k]: v } as Message;
    assert.throws(() => encodeMessage(m), EncodeError, String(k));
  }
  const e = message({
    type: MessageType.App,
    entries: [{ term: 1, index: 1, type: 7 as EntryType, data: new Uint8Array(0) }],
  });
  assert.throws(() => encodeMessage(e), EncodeError);
});
