import assert from "node:assert/strict";
import {
  BATCH_HEADER,
  BatchFormatError,
  decodeBatch,
  opSize,
  writeBatchHeader,
  writeOp,
} from "./batch.ts";
import { KIND_DELETE, KIND_PUT } from "./internal_key.ts";
import { b, prng, randomBytes } from "./testutil_test.ts";

function encode(seq: number, ops: { kind: number; key: Uint8Array; value?: Uint8Array }[]) {
  let n = BATCH_HEADER;
  for (const o of ops) n += opSize(o.kind, o.key, o.value);
  const buf = new Uint8Array(n);
  writeBatchHeader(buf, 0, seq, ops.length);
  let off = BATCH_HEADER;
  for (const o of ops) off = writeOp(buf, off, o.kind, o.key, o.value);
  assert.equal(off, n);
  return buf;
}

Deno.test("write batches round-trip puts, deletes and empty values", () => {
  const ops = [
    { kind: KIND_PUT, key: b("a"), value: b("1") },
    { kind: KIND_DELETE, key: b("b") },
    { kind: KIND_PUT, key: b("c"), value: new Uint8Array(0) },
    { kind: KIND_PUT, key: new Uint8Array(300).fill(9), value: new Uint8Array(70000).fill(1) },
  ];
  const d = decodeBatch(encode(2 ** 40 + 3, ops));
  assert.equal(d.seq, 2 ** 40 + 3);
  assert.equal(d.ops.length, 4);
  assert.deepEqual(d.ops[0], { kind: KIND_PUT, key: b("a"), value: b("1") });
  assert.equal(d.ops[1].kind, KIND_DELETE);
  assert.deepEqual(d.ops[1].key, b("b"));
  assert.equal(d.ops[2].value.length, 0);
  assert.equal(d.ops[3].value.length, 70000);
});

Deno.test("truncated or padded batches are rejected", () => {
  const buf = encode(1, [{ kind: KIND_PUT, key: b("key"), value: b("value") }]);
  for (let cut = 0; cut < buf.length; cut++) {
    assert.throws(() => decodeBatch(buf.subarray(0, cut)), BatchFormatError);
  }
  const padded = new Uint8Array(buf.length + 1);
  padded.set(buf);
  assert.throws(() => decodeBatch(padded), BatchFormatError);
});

Deno.test("batch decoder fuzz: random bytes only raise BatchFormatError", () => {
  const r = prng(11);
  for (let i = 0; i < 3000; i++) {
    const data = randomBytes(r, Math.floor(r() * 64));
    if (data.length >= 12 && r() < 0.7) {
      data[8] = data[9] = data[10] = 0;
      data[11] = Math.floor(r() * 4);
    }
    try {
      decodeBatch(data);
    } catch (e) {
      assert.ok(e instanceof BatchFormatError, String(e));
    }
  }
});
