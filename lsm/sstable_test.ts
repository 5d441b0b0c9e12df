import assert from "node:assert/strict";
import { BlockBuilder } from "./block_builder.ts";
import { BlockIterator } from "./block_reader.ts";
import { compareBytes } from "./bytes.ts";
import { BlockCache } from "./cache.ts";
import { CorruptionError } from "./errors.ts";
import { KIND_DELETE, KIND_PUT, MAX_SEQ } from "./internal_key.ts";
import { decodeFooter, FOOTER_SIZE } from "./sstable_format.ts";
import { TableReader, TOMBSTONE } from "./sstable_reader.ts";
import { TableWriter } from "./sstable_writer.ts";
import { b, prng, randomBytes, s, withTempDir } from "./testutil_test.ts";

const key = (i: number) => b("key" + String(i).padStart(6, "0"));

function buildTable(path: string, n: number, opts = { blockBytes: 512, bloomBitsPerKey: 10 }) {
  const w = new TableWriter(path, opts);
  for (let i = 0; i < n; i++) {
    // Two versions of every third key; every fifth newest version is a tombstone.
    if (i % 5 === 0) w.add(key(i), 1000 + i, KIND_DELETE, new Uint8Array(0));
    w.add(key(i), 10 + i, KIND_PUT, b("value" + i));
  }
  return w.finish();
}

Deno.test("table round-trips entries and answers point lookups at sequences", async () => {
  await withTempDir((dir) => {
    const info = buildTable(`${dir}/1.sst`, 2000);
    assert.ok(info.size > 0);
    assert.equal(info.entries, 2400);
    const t = TableReader.open(`${dir}/1.sst`, 1, new BlockCache(1 << 20));
    assert.ok(t.blockCount > 10);
    assert.equal(s(t.get(key(7), MAX_SEQ)), "value7");
    assert.equal(t.get(key(10), MAX_SEQ), TOMBSTONE);
    assert.equal(s(t.get(key(10), 999)), "value10", "older version visible at older sequence");
    assert.equal(t.get(key(7), 5), undefined, "nothing visible before first write");
    assert.equal(t.get(b("nope"), MAX_SEQ), undefined);
    assert.equal(t.get(b("key999999"), MAX_SEQ), undefined);
    t.close();
  });
});

Deno.test("table iterator scans in order and seeks forward and backward", async () => {
  await withTempDir((dir) => {
    buildTable(`${dir}/1.sst`, 1000);
    const t = TableReader.open(`${dir}/1.sst`, 1);
    const it = t.iterator();
    let n = 0;
    let prev: Uint8Array | undefined;
    for (it.seekToFirst(); it.valid(); it.next()) {
      if (prev) assert.ok(compareBytes(prev, it.userKey()) <= 0);
      prev = it.userKey().slice();
      n++;
    }
    assert.equal(n, 1200);
    it.seek(key(500), MAX_SEQ);
    assert.deepEqual(it.userKey(), key(500));
    assert.equal(it.kind(), KIND_DELETE);
    it.seek(key(500), 999);
    assert.equal(it.kind(), KIND_PUT);
    it.seekLT(key(500));
    assert.deepEqual(it.userKey(), key(499));
    it.seekLT(key(0));
    assert.equal(it.valid(), false);
    it.seekLT(b("zzz"));
    assert.deepEqual(it.userKey(), key(999));
    it.seekToLast();
    assert.deepEqual(it.userKey(), key(999));
    it.seek(b("zzz"), MAX_SEQ);
    assert.equal(it.valid(), false);
    t.close();
  });
});

Deno.test("every flipped byte of a table is detected as CorruptionError naming the file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/1.sst`;
    buildTable(path, 300);
    const good = await Deno.readFile(path);
    const r = prng(31);
    for (let i = 0; i < 60; i++) {
      const bad = good.slice();
      const pos = Math.floor(r() * bad.length);
      bad[pos] ^= 1 << Math.floor(r() * 8);
      await Deno.writeFile(path, bad);
      let caught: unknown;
      try {
        const t = TableReader.open(path, 1);
        try {
          const it = t.iterator();
          for (it.seekToFirst(); it.valid(); it.next());
        } finally {
          t.close();
        }
      } catch (e) {
        caught = e;
      }
      assert.ok(caught instanceof CorruptionError, `flip at ${pos} not detected: ${caught}`);
      assert.equal(caught.file, path);
      assert.ok(caught.offset >= 0 && caught.offset <= bad.length);
    }
  });
});

Deno.test("truncated tables fail to open with CorruptionError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/1.sst`;
    buildTable(path, 300);
    const good = await Deno.readFile(path);
    for (const cut of [0, 10, FOOTER_SIZE - 1, good.length - 1, Math.floor(good.length / 2)]) {
      await Deno.writeFile(path, good.subarray(0, cut));
      assert.throws(() => TableReader.open(path, 1), CorruptionError);
    }
  });
});

Deno.test("block and footer decoders fuzz: random bytes only raise CorruptionError", () => {
  const r = prng(32);
  for (let i = 0; i < 3000; i++) {
    const data = randomBytes(r, 4 + Math.floor(r() * 200));
    if (r() < 0.5) {
      const n = Math.floor(r() * 4);
      data[data.length - 4] = data[data.length - 3] = data[data.length - 2] = 0;
      data[data.length - 1] = n;
    }
    try {
      const it = new BlockIterator(data, "fuzz.sst", 0);
      for (it.seekToFirst(); it.valid(); it.next()) it.value();
      it.seek(b("m"), MAX_SEQ);
      it.seekLT(b("m"));
      it.seekToLast();
    } catch (e) {
      assert.ok(e instanceof CorruptionError, String(e));
    }
    const f = decodeFooter(randomBytes(r, FOOTER_SIZE));
    assert.equal(typeof f, "string");
  }
});

Deno.test("table open fuzz: random files only raise CorruptionError", async () => {
  await withTempDir(async (dir) => {
    const r = prng(33);
    const path = `${dir}/f.sst`;
    for (let i = 0; i < 200; i++) {
      await Deno.writeFile(path, randomBytes(r, Math.floor(r() * 400)));
      try {
        TableReader.open(path, 1).close();
      } catch (e) {
        assert.ok(e instanceof CorruptionError, String(e));
      }
    }
  });
});

Deno.test("block builder shares prefixes and restarts every interval", () => {
  const bb = new BlockBuilder(4);
  for (let i = 0; i < 10; i++) bb.add(b("commonprefix" + i), i + 1, KIND_PUT, b("v"));
  const block = bb.finish();
  assert.ok(block.length < 10 * ("commonprefix0".length + 8), "keys are prefix-compressed");
  const it = new BlockIterator(block.slice(), "t", 0);
  let n = 0;
  for (it.seekToFirst(); it.valid(); it.next()) {
    assert.equal(s(it.userKey()), "commonprefix" + n);
    n++;
  }
  assert.equal(n, 10);
});
