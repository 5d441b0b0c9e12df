import assert from "node:assert/strict";
import { compareBytes } from "./bytes.ts";
import { KIND_DELETE, KIND_PUT, MAX_SEQ } from "./internal_key.ts";
import { Memtable } from "./memtable.ts";
import { bloomHash } from "./bloom.ts";
import { b, prng, s } from "./testutil_test.ts";

Deno.test("memtable find returns the newest version visible at a sequence", () => {
  const m = new Memtable();
  m.add(1, KIND_PUT, b("k"), b("v1"));
  m.add(5, KIND_PUT, b("k"), b("v5"));
  m.add(9, KIND_DELETE, b("k"), undefined);
  m.add(3, KIND_PUT, b("j"), b("j3"));
  assert.equal(m.find(b("k"), 0), -1);
  assert.equal(s(m.valueCopy(m.find(b("k"), 1))), "v1");
  assert.equal(s(m.valueCopy(m.find(b("k"), 7))), "v5");
  assert.equal(m.kindOf(m.find(b("k"), MAX_SEQ)), KIND_DELETE);
  assert.equal(m.find(b("kk"), MAX_SEQ), -1);
  assert.equal(m.find(b(""), MAX_SEQ), -1);
  assert.equal(m.entries, 4);
  assert.equal(m.minSeq, 1);
  assert.equal(m.maxSeq, 9);
});

Deno.test("memtable iterates in internal-key order and supports seeks both ways", () => {
  const r = prng(21);
  const m = new Memtable(16);
  const entries: [string, number][] = [];
  for (let i = 1; i <= 3000; i++) {
    const k = "k" + Math.floor(r() * 500);
    m.add(i, KIND_PUT, b(k), b("v" + i));
    entries.push([k, i]);
  }
  entries.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : y[1] - x[1]));
  const it = m.iterator();
  let i = 0;
  for (it.seekToFirst(); it.valid(); it.next(), i++) {
    assert.equal(s(it.userKey()), entries[i][0]);
    assert.equal(it.seq(), entries[i][1]);
    assert.equal(s(it.value()), "v" + entries[i][1]);
  }
  assert.equal(i, entries.length);
  it.seek(b("k25"), MAX_SEQ);
  assert.ok(compareBytes(it.userKey(), b("k25")) >= 0);
  it.seekLT(b("k25"));
  assert.ok(compareBytes(it.userKey(), b("k25")) < 0);
  it.seekToLast();
  assert.equal(s(it.userKey()), entries[entries.length - 1][0]);
  it.seekLT(b("a"));
  assert.equal(it.valid(), false);
});

Deno.test("memtable state export rebuilds an identical read-only memtable", () => {
  const m = new Memtable();
  for (let i = 1; i <= 500; i++) {
    m.add(i, i % 3 ? KIND_PUT : KIND_DELETE, b("key" + (i % 97)), b("v" + i));
  }
  const c = Memtable.fromState(structuredClone(m.exportState()));
  const a = m.iterator();
  const z = c.iterator();
  for (a.seekToFirst(), z.seekToFirst(); a.valid(); a.next(), z.next()) {
    assert.ok(z.valid());
    assert.deepEqual(z.userKey(), a.userKey());
    assert.equal(z.seq(), a.seq());
    assert.equal(z.kind(), a.kind());
  }
  assert.equal(z.valid(), false);
});

Deno.test("memtable accounts for memory as it grows", () => {
  const m = new Memtable();
  const before = m.approximateBytes;
  for (let i = 0; i < 1000; i++) m.add(i + 1, KIND_PUT, b("key" + i), new Uint8Array(100));
  assert.ok(m.approximateBytes - before >= 100_000);
});

Deno.test("moveToShared copies a frozen memtable onto shared arrays, reusing targets", () => {
  const enc = new TextEncoder();
  const fill = (m: Memtable) => {
    for (let i = 0; i < 300; i++) m.add(i + 1, KIND_PUT, enc.encode(`k${i}`), enc.encode(`v${i}`));
  };
  const m = new Memtable(1 << 16, 1 << 16);
  fill(m);
  const old = m.moveToShared(undefined);
  assert.ok(m.shared && old !== undefined && !old.shared, "previous arrays handed back");
  assert.equal(m.entries, 300);
  const x = m.find(enc.encode("k123"), MAX_SEQ, bloomHash(enc.encode("k123")));
  assert.ok(x >= 0);
  assert.equal(new TextDecoder().decode(m.valueOf(x)), "v123");
  const target = m.releaseBuffers();
  assert.ok(target.shared);
  // The next memtable reuses the ordinary arrays, and moves into the shared target.
  const n = new Memtable(1 << 16, 1 << 16, false, old);
  fill(n);
  n.readers++; // a scan holds it: its arrays are not handed back
  assert.equal(n.moveToShared(target), undefined);
  const y = n.find(enc.encode("k299"), MAX_SEQ);
  assert.equal(new TextDecoder().decode(n.valueOf(y)), "v299");
  assert.equal(n.exportState().arena, target.arena, "the target's arrays are used");
});
