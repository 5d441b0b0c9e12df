import assert from "node:assert/strict";
import {
  type Compaction,
  levelScores,
  makeCompaction,
  pickCompaction,
  runMerge,
} from "./compaction.ts";
import { KIND_DELETE, KIND_PUT, makeInternalKey, MAX_SEQ } from "./internal_key.ts";
import { MergingIterator } from "./iterator.ts";
import { LevelIterator } from "./level_iterator.ts";
import { Memtable } from "./memtable.ts";
import { resolveOptions } from "./options.ts";
import { TableReader } from "./sstable_reader.ts";
import { TableWriter } from "./sstable_writer.ts";
import { Version } from "./version.ts";
import { type FileMeta, NUM_LEVELS } from "./version_edit.ts";
import { b, s, withTempDir } from "./testutil_test.ts";

type Entry = [key: string, seq: number, kind: number, value?: string];

function writeTable(
  dir: string,
  number: number,
  entries: Entry[],
  targetFileBytes = 1 << 20,
): FileMeta {
  const sorted = entries.slice().sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : y[1] - x[1]));
  const w = new TableWriter(
    `${dir}/${number}.sst`,
    resolveOptions({ targetFileBytes, blockBytes: 128 }),
  );
  for (const [k, seq, kind, v] of sorted) w.add(b(k), seq, kind, b(v ?? ""));
  const info = w.finish();
  return { number, size: info.size, smallest: info.smallest, largest: info.largest };
}

async function merge(
  dir: string,
  c: Compaction,
  smallestSnapshot: number,
  base = true,
  targetFileBytes = 1 << 20,
): Promise<{ files: FileMeta[]; entries: Entry[] }> {
  let next = 100;
  const readers: TableReader[] = [];
  const out = await runMerge(c, {
    opts: resolveOptions({ targetFileBytes, blockBytes: 128 }),
    table: (f) => {
      const t = TableReader.open(`${dir}/${f.number}.sst`, f.number);
      readers.push(t);
      return t;
    },
    newTable: () => {
      const n = next++;
      return { number: n, path: `${dir}/${n}.sst` };
    },
    smallestSnapshot,
    isBaseLevelForKey: () => base,
    yield: () => Promise.resolve(),
  });
  const entries: Entry[] = [];
  for (const f of out.files) {
    const t = TableReader.open(`${dir}/${f.number}.sst`, f.number);
    const it = t.iterator();
    for (it.seekToFirst(); it.valid(); it.next()) {
      entries.push([
        s(it.userKey())!,
        it.seq(),
        it.kind(),
        it.kind() === KIND_PUT ? s(it.value()) : undefined,
      ]);
    }
    t.close();
  }
  for (const r of readers) r.close();
  return { files: out.files, entries };
}

Deno.test("compaction drops shadowed versions and tombstones when no snapshot or deeper level needs them", async () => {
  await withTempDir(async (dir) => {
    const newer = writeTable(dir, 2, [["a", 10, KIND_PUT, "a10"], ["b", 11, KIND_DELETE], [
      "c",
      12,
      KIND_PUT,
      "c12",
    ]]);
    const older = writeTable(dir, 1, [["a", 1, KIND_PUT, "a1"], ["b", 2, KIND_PUT, "b2"], [
      "d",
      3,
      KIND_PUT,
      "d3",
    ]]);
    const c: Compaction = { level: 0, inputs: [older, newer], overlaps: [], trivialMove: false };
    const { entries } = await merge(dir, c, MAX_SEQ);
    assert.deepEqual(entries, [["a", 10, KIND_PUT, "a10"], ["c", 12, KIND_PUT, "c12"], [
      "d",
      3,
      KIND_PUT,
      "d3",
    ]]);
  });
});

Deno.test("compaction keeps versions an open snapshot can read", async () => {
  await withTempDir(async (dir) => {
    const t = writeTable(dir, 1, [
      ["a", 10, KIND_PUT, "a10"],
      ["a", 5, KIND_PUT, "a5"],
      ["a", 1, KIND_PUT, "a1"],
      ["b", 8, KIND_DELETE],
      ["b", 2, KIND_PUT, "b2"],
    ]);
    const c: Compaction = { level: 0, inputs: [t], overlaps: [], trivialMove: false };
    // Snapshot at 6: needs a@5 (a@1 is shadowed for it), b@2 (the tombstone at 8 is newer).
    const { entries } = await merge(dir, c, 6);
    assert.deepEqual(entries, [["a", 10, KIND_PUT, "a10"], ["a", 5, KIND_PUT, "a5"], [
      "b",
      8,
      KIND_DELETE,
      undefined,
    ], ["b", 2, KIND_PUT, "b2"]]);
  });
});

Deno.test("compaction keeps tombstones while a deeper level may hold the key", async () => {
  await withTempDir(async (dir) => {
    const t = writeTable(dir, 1, [["k", 9, KIND_DELETE], ["k", 3, KIND_PUT, "old"]]);
    const c: Compaction = { level: 1, inputs: [t], overlaps: [], trivialMove: false };
    const { entries } = await merge(dir, c, MAX_SEQ, false);
    assert.deepEqual(entries, [["k", 9, KIND_DELETE, undefined]]);
  });
});

Deno.test("compaction cuts outputs by size without splitting the versions of a key", async () => {
  await withTempDir(async (dir) => {
    const entries: Entry[] = [];
    for (let i = 0; i < 400; i++) {
      const k = `key${String(i).padStart(4, "0")}`;
      entries.push([k, 1000 + i, KIND_PUT, "x".repeat(40)], [k, i + 1, KIND_PUT, "y".repeat(40)]);
    }
    const t = writeTable(dir, 1, entries);
    const c: Compaction = { level: 0, inputs: [t], overlaps: [], trivialMove: false };
    const { files } = await merge(dir, c, 1, true, 4096);
    assert.ok(files.length > 3, `expected several outputs, got ${files.length}`);
    for (let i = 1; i < files.length; i++) {
      const prevLargest = s(files[i - 1].largest.subarray(0, files[i - 1].largest.length - 8));
      const smallest = s(files[i].smallest.subarray(0, files[i].smallest.length - 8));
      assert.ok(prevLargest! < smallest!, "outputs are disjoint by user key");
    }
  });
});

Deno.test("picking: L0 file count and level bytes drive scores; trivial moves skip rewriting", () => {
  const o = resolveOptions({ l0CompactionTrigger: 2, levelBaseBytes: 1024, levelMultiplier: 10 });
  const f = (n: number, lo: string, hi: string, size = 100): FileMeta => ({
    number: n,
    size,
    smallest: makeInternalKey(b(lo), 1, KIND_PUT),
    largest: makeInternalKey(b(hi), 1, KIND_PUT),
  });
  const levels: FileMeta[][] = Array.from({ length: NUM_LEVELS }, () => []);
  let v = new Version(levels);
  assert.equal(pickCompaction(v, o, []), undefined);
  levels[0] = [f(1, "a", "c"), f(2, "b", "d")];
  levels[1] = [f(3, "a", "b"), f(4, "x", "z")];
  v = new Version(levels);
  assert.equal(levelScores(v, o)[0], 1);
  const c = pickCompaction(v, o, [])!;
  assert.equal(c.level, 0);
  assert.deepEqual(c.inputs.map((x) => x.number), [1, 2]);
  assert.deepEqual(c.overlaps.map((x) => x.number), [3]);
  assert.equal(c.trivialMove, false);
  const big: FileMeta[][] = Array.from({ length: NUM_LEVELS }, () => []);
  big[1] = [f(5, "a", "b", 2048), f(6, "c", "d", 2048)];
  big[2] = [f(7, "c", "d", 10)];
  const v2 = new Version(big);
  const c2 = pickCompaction(v2, o, [])!;
  assert.equal(c2.level, 1);
  assert.deepEqual(c2.inputs.map((x) => x.number), [5]);
  assert.equal(c2.trivialMove, true, "no overlap below: move the file");
  const c3 = pickCompaction(v2, o, [undefined, makeInternalKey(b("b"), 1, KIND_PUT)])!;
  assert.deepEqual(c3.inputs.map((x) => x.number), [6], "round-robin pointer advances");
  assert.deepEqual(makeCompaction(v2, 1, [big[1][1]]).overlaps.map((x) => x.number), [7]);
});

Deno.test("merging and level iterators combine sources in internal-key order", async () => {
  await withTempDir((dir) => {
    const t1 = writeTable(dir, 1, [["a", 1, KIND_PUT, "1"], ["c", 2, KIND_PUT, "2"]]);
    const t2 = writeTable(dir, 2, [["d", 3, KIND_PUT, "3"], ["f", 4, KIND_PUT, "4"]]);
    const readers = [TableReader.open(`${dir}/1.sst`, 1), TableReader.open(`${dir}/2.sst`, 2)];
    const level = new LevelIterator([t1, t2], (f) => readers[f.number - 1]);
    const m = new Memtable();
    m.add(10, KIND_PUT, b("c"), b("new"));
    m.add(11, KIND_DELETE, b("e"), undefined);
    const it = new MergingIterator([m.iterator(), level]);
    const seen: string[] = [];
    for (it.seekToFirst(); it.valid(); it.next()) seen.push(`${s(it.userKey())}@${it.seq()}`);
    assert.deepEqual(seen, ["a@1", "c@10", "c@2", "d@3", "e@11", "f@4"]);
    it.seek(b("d"), MAX_SEQ);
    assert.equal(s(it.userKey()), "d");
    it.seekLT(b("d"));
    assert.equal(s(it.userKey()), "c");
    it.seekToLast();
    assert.equal(s(it.userKey()), "f");
    level.seekLT(b("d"));
    assert.equal(s(level.userKey()), "c");
    level.seekLT(b("a"));
    assert.equal(level.valid(), false);
    for (const r of readers) r.close();
  });
});
