/**
 * The apply path's hand-written encoders against the ByteWriter forms they replaced: session
 * records and session keys, byte for byte over random inputs, and the records decode back.
 */
import assert from "node:assert/strict";
import { Prng } from "../raft/sim/prng.ts";
import { ByteWriter } from "./bytes.ts";
import {
  APPLIED_KEY,
  decodeAppliedLastChange,
  decodeSession,
  encodeSession,
  KvCore,
  readAppliedIndex,
  readAppliedLastChange,
  sessionKey,
} from "./kv_core.ts";
import { DecodeError } from "./errors.ts";
import type { SessionInfo } from "./kv_state_machine.ts";
import {
  makeVersionstamp,
  nonU64ValueMessage,
  SUM_RANGE_MESSAGE,
  V8_SUM_ALL_MESSAGES,
  versionstampIndex,
} from "./kv_model.ts";

const MESSAGES = [
  nonU64ValueMessage("sum"),
  nonU64ValueMessage("min"),
  nonU64ValueMessage("max"),
  SUM_RANGE_MESSAGE,
  ...V8_SUM_ALL_MESSAGES,
];

/** The session record encoder before it was hand-written (kv_core.ts at 49ea605). */
function referenceEncodeSession(s: SessionInfo): Uint8Array {
  const w = new ByteWriter(40);
  w.u8(3);
  w.u8(s.hasResult ? 1 : 0);
  w.u32(s.hash);
  w.uvarint(s.lastSeq);
  w.uvarint(s.lastActive);
  w.uvarint(s.lastIndex);
  w.uvarint(s.lastPos ?? 0);
  w.uvarint(s.idleTimeoutMs);
  const c = s.result;
  if (!c) return w.finish();
  if (c.kind === "ok") {
    const v = new DataView(c.versionstamp.buffer, c.versionstamp.byteOffset, 10);
    w.u8(1);
    w.uvarint(s.lastIndex - Number(v.getBigUint64(0, false)));
    w.uvarint(v.getUint16(8, false));
  } else if (c.kind === "check_failed") {
    w.u8(2);
    let mask = 0;
    for (const i of c.failedChecks) mask |= 1 << i;
    w.uvarint(mask);
  } else if (c.kind === "value_type") {
    w.u8(3);
    const i = MESSAGES.indexOf(c.message);
    w.u8(i < 0 ? 255 : i);
  } else {
    w.u8(0);
  }
  return w.finish();
}

Deno.test("property: encodeSession writes the bytes of the ByteWriter encoder, and decodeSession reads them back", () => {
  const prng = new Prng(7);
  const rand = () => prng.float();
  /** A non-negative safe integer of random magnitude (varints of 1 to 8 bytes). */
  const num = () => Math.floor(rand() * 2 ** Math.floor(rand() * 54));
  for (let i = 0; i < 20_000; i++) {
    const lastIndex = num();
    const s: SessionInfo = {
      id: BigInt(num()),
      lastSeq: num(),
      lastActive: num(),
      lastIndex,
      lastPos: Math.floor(rand() * 0x10000),
      idleTimeoutMs: num(),
      hash: Math.floor(rand() * 0x1_0000_0000),
      hasResult: rand() < 0.5,
    };
    const kind = Math.floor(rand() * 5);
    if (kind === 1) {
      s.result = {
        kind: "ok",
        versionstamp: makeVersionstamp(
          Math.floor(rand() * (lastIndex + 1)),
          Math.floor(rand() * 0x10000),
        ),
      };
    } else if (kind === 2) {
      const failedChecks: number[] = [];
      for (let c = 0; c < 31; c++) if (rand() < 0.2) failedChecks.push(c);
      s.result = { kind: "check_failed", failedChecks };
    } else if (kind === 3) {
      const j = Math.floor(rand() * (MESSAGES.length + 1));
      s.result = { kind: "value_type", message: MESSAGES[j] ?? "value_type" };
    } else if (kind === 4) {
      s.result = { kind: "plain" };
    }
    const got = encodeSession(s);
    assert.deepEqual(got, referenceEncodeSession(s), JSON.stringify(s, (_, v) => String(v)));
    const back = decodeSession(s.id, got);
    assert.equal(back.lastSeq, s.lastSeq);
    assert.equal(back.lastActive, s.lastActive);
    assert.equal(back.lastIndex, s.lastIndex);
    assert.equal(back.lastPos, s.lastPos);
    assert.equal(back.idleTimeoutMs, s.idleTimeoutMs);
    assert.equal(back.hash, s.hash);
    assert.equal(back.hasResult, s.hasResult);
    if (s.result?.kind === "ok") {
      assert.equal(back.result?.kind, "ok");
      assert.deepEqual(
        (back.result as { versionstamp: Uint8Array }).versionstamp,
        s.result.versionstamp,
      );
    } else if (s.result?.kind !== "value_type") {
      assert.deepEqual(back.result, s.result);
    }
  }
});

Deno.test("property: sessionKey is 0x00 0x07 ++ u64be id for every u64 id", () => {
  const prng = new Prng(11);
  const rand = () => prng.float();
  const ids = [
    0n,
    1n,
    255n,
    256n,
    2n ** 32n - 1n,
    2n ** 32n,
    2n ** 53n - 1n,
    2n ** 53n,
    2n ** 64n - 1n,
  ];
  for (let i = 0; i < 5000; i++) {
    const bits = Math.floor(rand() * 65);
    ids.push(
      BigInt.asUintN(64, BigInt(Math.floor(rand() * 2 ** 53)) << BigInt(Math.max(0, bits - 53))),
    );
  }
  for (const id of ids) {
    const want = new Uint8Array(10);
    want.set([0x00, 0x07]);
    new DataView(want.buffer).setBigUint64(2, id, false);
    assert.deepEqual(sessionKey(id), want, String(id));
  }
});

Deno.test("property: versionstampIndex reads the u64 index as Number() of the BigInt would", () => {
  const prng = new Prng(13);
  const rand = () => prng.float();
  for (let i = 0; i < 5000; i++) {
    const vs = new Uint8Array(10);
    for (let j = 0; j < 10; j++) vs[j] = Math.floor(rand() * 256);
    if (rand() < 0.5) vs[0] = vs[1] = 0;
    const want = Number(new DataView(vs.buffer).getBigUint64(0, false));
    assert.equal(versionstampIndex(vs), want);
  }
  assert.equal(versionstampIndex(makeVersionstamp(2 ** 53 - 1)), 2 ** 53 - 1);
});

Deno.test("the applied-index record: the index as u64 (what earlier versions read), then 1 + the last change's position; 8 bytes (an earlier version, a restore) is not known", async () => {
  const store = (v: Uint8Array) => ({
    get: (k: Uint8Array) =>
      Promise.resolve(k.length === 2 && k[0] === 0 && k[1] === 1 ? v : undefined),
    scan: () => (async function* () {})(),
  });
  const le = (n: number, ...tail: number[]) => {
    const w = new ByteWriter(16);
    w.u64(n);
    return new Uint8Array([...w.finish(), ...tail]);
  };
  for (
    const [index, lastChange] of [[7, undefined], [7, -1], [2 ** 40 + 3, 0], [9, 4095], [
      9,
      0xfffe,
    ]] as const
  ) {
    const op = KvCore.appliedOp(index, lastChange);
    assert.deepEqual(op.key, APPLIED_KEY);
    assert.ok(op.type === "put");
    // The first 8 bytes are the u64 of the format before (readAppliedIndex is unchanged).
    assert.deepEqual(op.value.subarray(0, 8), le(index));
    assert.equal(
      op.value.length,
      lastChange === undefined
        ? 8
        : 8 + (lastChange + 1 < 128 ? 1 : lastChange + 1 < 16384 ? 2 : 3),
    );
    assert.equal(await readAppliedIndex(store(op.value)), index);
    assert.equal(await readAppliedLastChange(store(op.value)), lastChange);
  }
  assert.equal(await readAppliedLastChange(store(le(5))), undefined, "the earlier format");
  assert.throws(() => decodeAppliedLastChange(le(5, 1, 0)), DecodeError, "trailing bytes");
  assert.throws(() => decodeAppliedLastChange(le(5, 0x80)), DecodeError, "a torn varint");
  assert.throws(() => decodeAppliedLastChange(le(5, 0x81, 0x80, 0x04)), DecodeError, "> 0xfffe");
});
