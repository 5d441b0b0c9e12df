/**
 * Ad-hoc profiling helper (not CI): builds five random tables and times one
 * L0->L1 merge in-process. Usage: deno run -A bench/lsm_merge_profile.ts
 */
import { TableWriter } from "../lsm/sstable_writer.ts";
import { TableReader } from "../lsm/sstable_reader.ts";
import { runMerge } from "../lsm/compaction.ts";
import { resolveOptions } from "../lsm/options.ts";
import { Memtable } from "../lsm/memtable.ts";
import type { FileMeta } from "../lsm/version_edit.ts";

const dir = await Deno.makeTempDir({ prefix: "lsm_merge_" });
try {
  const opts = resolveOptions({});
  const v = new Uint8Array(100).fill(3);
  const files: FileMeta[] = [];
  let seq = 1;
  let num = 1;
  const te = new TextEncoder();
  let t = performance.now();
  let tableMs = 0;
  for (let f = 0; f < 5; f++) {
    const m = new Memtable();
    for (let i = 0; i < 60000; i++) {
      m.add(seq++, 1, te.encode(String(Math.floor(Math.random() * 1e6)).padStart(16, "0")), v);
    }
    const t1 = performance.now();
    const w = new TableWriter(`${dir}/${num}.sst`, opts);
    const it = m.iterator();
    for (it.seekToFirst(); it.valid(); it.next()) {
      w.add(it.userKey(), it.seq(), it.kind(), it.value());
    }
    const info = w.finish();
    tableMs += performance.now() - t1;
    files.push({ number: num++, size: info.size, smallest: info.smallest, largest: info.largest });
  }
  console.log(
    "memtable inserts us/op",
    ((performance.now() - t - tableMs) * 1000 / 300000).toFixed(2),
  );
  console.log("flush us/entry", (tableMs * 1000 / 300000).toFixed(2));
  for (let r = 0; r < 3; r++) {
    t = performance.now();
    const out = await runMerge({
      level: 0,
      inputs: files.slice(0, 4),
      overlaps: [files[4]],
      trivialMove: false,
    }, {
      opts,
      table: (f) => TableReader.open(`${dir}/${f.number}.sst`, f.number),
      newTable: () => {
        const n = 1000 + num++;
        return { number: n, path: `${dir}/${n}.sst` };
      },
      smallestSnapshot: seq,
      isBaseLevelForKey: () => true,
      yield: () => Promise.resolve(),
    });
    const ms = performance.now() - t;
    console.log(
      "merge MB/s in",
      (out.bytesRead / 1e6 / (ms / 1000)).toFixed(1),
      "us/entry",
      (ms * 1000 / 300000).toFixed(2),
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
