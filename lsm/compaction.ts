/**
 * Leveled compaction: picking (L0 file-count trigger, L1+ byte targets growing
 * by a multiplier) and the merge that writes size-cut output tables while
 * dropping shadowed versions and tombstones nobody can observe any more.
 * @module
 */
import { compareRange } from "./bytes.ts";
import { compareInternal, KIND_DELETE, userKeyOf } from "./internal_key.ts";
import { type InternalIterator, MergingIterator } from "./iterator.ts";
import { LevelIterator } from "./level_iterator.ts";
import type { Env } from "./env.ts";
import type { ResolvedOptions } from "./options.ts";
import type { TableReader } from "./sstable_reader.ts";
import { type TableInfo, TableWriter } from "./sstable_writer.ts";
import type { Version } from "./version.ts";
import { type FileMeta, NUM_LEVELS } from "./version_edit.ts";

/** A chosen compaction: inputs of `level` merged with overlapping files of `level + 1`. */
export interface Compaction {
  level: number;
  inputs: FileMeta[];
  overlaps: FileMeta[];
  /** True when the inputs can move down without rewriting. */
  trivialMove: boolean;
}

/** Byte target of `level` (>= 1). */
export function maxBytesForLevel(o: ResolvedOptions, level: number): number {
  let n = o.levelBaseBytes;
  for (let l = 1; l < level; l++) n *= o.levelMultiplier;
  return n;
}

/** Compaction score of each level (>= 1 means compaction is due). */
export function levelScores(v: Version, o: ResolvedOptions): number[] {
  const s: number[] = [v.levels[0].length / o.l0CompactionTrigger];
  for (let l = 1; l < NUM_LEVELS - 1; l++) s.push(v.levelBytes(l) / maxBytesForLevel(o, l));
  return s;
}

function range(files: FileMeta[]): [Uint8Array, Uint8Array] {
  let lo = files[0].smallest;
  let hi = files[0].largest;
  for (const f of files) {
    if (compareInternal(f.smallest, lo) < 0) lo = f.smallest;
    if (compareInternal(f.largest, hi) > 0) hi = f.largest;
  }
  return [userKeyOf(lo), userKeyOf(hi)];
}

/** Builds a compaction of `inputs` at `level` with the overlapping files below. */
export function makeCompaction(v: Version, level: number, inputs: FileMeta[]): Compaction {
  const [lo, hi] = range(inputs);
  const overlaps = v.overlapping(level + 1, lo, hi);
  const trivialMove = overlaps.length === 0 && inputs.length === 1 &&
    (level > 0 || v.levels[0].length === 1);
  return { level, inputs, overlaps, trivialMove };
}

/** Picks the most urgent compaction, or undefined when none is due. */
export function pickCompaction(
  v: Version,
  o: ResolvedOptions,
  pointers: Array<Uint8Array | undefined>,
): Compaction | undefined {
  const scores = levelScores(v, o);
  let best = -1;
  for (let l = 0; l < scores.length; l++) {
    if (scores[l] >= 1 && (best < 0 || scores[l] > scores[best])) best = l;
  }
  if (best < 0) return undefined;
  if (best === 0) return makeCompaction(v, 0, v.levels[0].slice());
  const files = v.levels[best];
  const ptr = pointers[best];
  let f = files[0];
  if (ptr !== undefined) {
    const next = files.find((x) => compareInternal(x.largest, ptr) > 0);
    if (next) f = next;
  }
  return makeCompaction(v, best, [f]);
}

/** Everything a merge needs from the database. */
export interface MergeContext {
  opts: ResolvedOptions;
  /** File system of the outputs (default: the real one). */
  env?: Env;
  /** Opens (or returns cached) reader of a table. */
  table(f: FileMeta): TableReader;
  /** Allocates a new table file path and number. */
  newTable(): { number: number; path: string } | Promise<{ number: number; path: string }>;
  /** Oldest sequence any snapshot can read at. */
  smallestSnapshot: number;
  /** True when no level deeper than the output level may hold `userKey`. */
  isBaseLevelForKey(userKey: Uint8Array): boolean;
  /** Cooperative yield, called between chunks of work. */
  yield(): Promise<void>;
  /** Called before each output write/fsync (I/O throttling hook). */
  beforeIo?: () => void;
}

/** Output of a merge. */
export interface MergeOutput {
  files: FileMeta[];
  bytesRead: number;
  bytesWritten: number;
}

/** Merges the compaction inputs into new tables (durable before this resolves). */
export async function runMerge(c: Compaction, ctx: MergeContext): Promise<MergeOutput> {
  const children: InternalIterator[] = [];
  // Inputs at L0 may overlap: newest first. L1+ inputs are disjoint.
  const ins = c.level === 0 ? c.inputs.slice().sort((a, b) => b.number - a.number) : c.inputs;
  if (c.level === 0) { for (const f of ins) children.push(ctx.table(f).iterator()); }
  else children.push(new LevelIterator(ins, (f) => ctx.table(f)));
  if (c.overlaps.length > 0) children.push(new LevelIterator(c.overlaps, (f) => ctx.table(f)));
  const it = new MergingIterator(children);
  const out: FileMeta[] = [];
  let bytesRead = 0;
  for (const f of [...c.inputs, ...c.overlaps]) bytesRead += f.size;
  let writer: TableWriter | undefined;
  let number = 0;
  // Current user key, copied into a reusable buffer (no allocation per key).
  let curKey = new Uint8Array(256);
  let curLen = -1;
  let lastSeqForKey = Infinity;
  let n = 0;
  const finishOutput = () => {
    const info: TableInfo = writer!.finish();
    out.push({ number, size: info.size, smallest: info.smallest, largest: info.largest });
    writer = undefined;
  };
  try {
    for (it.seekToFirst(); it.valid(); it.next()) {
      if ((++n & 255) === 0) await ctx.yield();
      const uk = it.userKey();
      const seq = it.seq();
      let newKey = false;
      if (curLen < 0 || compareRange(uk, 0, uk.length, curKey, 0, curLen) !== 0) {
        if (uk.length > curKey.length) curKey = new Uint8Array(uk.length * 2);
        for (let i = 0; i < uk.length; i++) curKey[i] = uk[i];
        curLen = uk.length;
        lastSeqForKey = Infinity;
        newKey = true;
      }
      let drop = false;
      if (lastSeqForKey <= ctx.smallestSnapshot) drop = true;
      else if (
        it.kind() === KIND_DELETE && seq <= ctx.smallestSnapshot && ctx.isBaseLevelForKey(uk)
      ) drop = true;
      lastSeqForKey = seq;
      if (drop) continue;
      if (writer !== undefined && newKey && writer.approximateSize >= ctx.opts.targetFileBytes) {
        finishOutput();
      }
      if (writer === undefined) {
        const t = await ctx.newTable();
        number = t.number;
        writer = new TableWriter(t.path, { ...ctx.opts, beforeIo: ctx.beforeIo }, ctx.env);
      }
      writer.add(uk, seq, it.kind(), it.value());
    }
    if (writer !== undefined) finishOutput();
  } catch (e) {
    writer?.abandon();
    throw e;
  }
  let bytesWritten = 0;
  for (const f of out) bytesWritten += f.size;
  return { files: out, bytesRead, bytesWritten };
}
