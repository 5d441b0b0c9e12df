/**
 * Worker entry that runs memtable flushes and compaction merges off the main
 * thread (one worker does both: a merge yields to a waiting flush every few ms).
 * The main thread sends a {@linkcode MergeRequest}; the worker opens the input tables
 * itself, asks the main thread for output file numbers, writes and fsyncs the
 * outputs and replies with their metadata. It never touches the manifest.
 * @module
 */
import { parentPort } from "node:worker_threads";
import { compareBytes } from "./bytes.ts";
import { type Compaction, runMerge } from "./compaction.ts";
import { ClosedError, CorruptionError } from "./errors.ts";
import { syncDir, tablePath } from "./filenames.ts";
import { userKeyOf } from "./internal_key.ts";
import type { ResolvedOptions } from "./options.ts";
import { TableReader } from "./sstable_reader.ts";
import { Version } from "./version.ts";
import { Memtable, type MemtableState } from "./memtable.ts";
import { TableWriter } from "./sstable_writer.ts";
import { fromWire } from "./worker_wire.ts";
import type { FileMeta } from "./version_edit.ts";

/** The port to the main thread (a node:worker_threads Worker: it takes V8 resource limits). */
const self = parentPort!;

/** Request to merge a compaction. */
export interface MergeRequest {
  type: "merge";
  id: number;
  dir: string;
  compaction: Compaction;
  opts: ResolvedOptions;
  smallestSnapshot: number;
  levels: FileMeta[][];
  /** File numbers reserved for the outputs (more are requested when they run out). */
  fileNumbers?: number[];
  /**
   * Shared counter of foreground fdatasyncs in flight: while it is non-zero the
   * merge holds back its own writes (up to 50 ms per chunk) so WAL syncs stay fast.
   * Slot 1 is set to 1 when the database closes: the merge aborts.
   */
  ioSignal?: Int32Array;
}

/** Request to write a frozen memtable as table `number`. */
export interface FlushRequest {
  type: "flush";
  id: number;
  dir: string;
  path: string;
  number: number;
  opts: ResolvedOptions;
  mem: MemtableState;
}

/** Messages the worker sends. */
export type WorkerMessage =
  | { type: "alloc"; id: number }
  | {
    type: "done";
    id: number;
    files: FileMeta[];
    bytesRead: number;
    bytesWritten: number;
  }
  | {
    type: "error";
    id: number;
    name: string;
    message: string;
    file?: string;
    offset?: number;
  };

function flush(req: FlushRequest): void {
  try {
    const m = Memtable.fromState(req.mem);
    const w = new TableWriter(req.path, req.opts);
    try {
      const it = m.iterator();
      for (it.seekToFirst(); it.valid(); it.next()) {
        w.add(it.userKey(), it.seq(), it.kind(), it.value());
      }
      const info = w.finish();
      syncDir(req.dir);
      const meta: FileMeta = {
        number: req.number,
        size: info.size,
        smallest: info.smallest,
        largest: info.largest,
      };
      self.postMessage(
        {
          type: "done",
          id: req.id,
          files: [meta],
          bytesRead: 0,
          bytesWritten: info.size,
        } satisfies WorkerMessage,
      );
    } catch (e) {
      w.abandon();
      throw e;
    }
  } catch (e) {
    postError(req.id, e);
  }
}

function postError(id: number, e: unknown): void {
  const err = e as Error;
  self.postMessage(
    {
      type: "error",
      id,
      name: err?.name ?? "Error",
      message: e instanceof CorruptionError ? e.detail : err?.message ?? String(e),
      file: e instanceof CorruptionError ? e.file : undefined,
      offset: e instanceof CorruptionError ? e.offset : undefined,
    } satisfies WorkerMessage,
  );
}

function yieldIo(sig: Int32Array): void {
  const deadline = performance.now() + 50;
  for (;;) {
    const v = Atomics.load(sig, 0);
    if (v <= 0) return;
    const left = deadline - performance.now();
    if (left <= 0) return;
    Atomics.wait(sig, 0, v, Math.min(left, 2));
  }
}

const allocWaiters: Array<(n: number) => void> = [];

/** Last time a merge let the worker's message queue run. */
let lastTurn = 0;
const turns = new MessageChannel();
let turnWaiters: Array<() => void> = [];
turns.port1.onmessage = () => {
  const w = turnWaiters;
  turnWaiters = [];
  for (const r of w) r();
};

/**
 * A merge runs in chunks; every few ms it lets one event-loop turn through,
 * so a flush request (the same worker does both) is served within a chunk
 * instead of after the whole merge.
 */
function yieldToMessages(): Promise<void> {
  const now = performance.now();
  if (now - lastTurn < 4) return Promise.resolve();
  lastTurn = now;
  return new Promise<void>((r) => {
    turnWaiters.push(r);
    if (turnWaiters.length === 1) turns.port2.postMessage(0);
  });
}

/**
 * Fault injection for tests ({@link WorkerClient.crashAfterOutputs}): when a merge asks for
 * output number `crashAfterOutputs + 1`, the worker throws an uncaught error (the thread dies
 * as on a real crash) with the earlier outputs complete on disk.
 */
let crashAfterOutputs = -1;

async function merge(req: MergeRequest): Promise<void> {
  const readers = new Map<number, TableReader>();
  const v = new Version(req.levels);
  const outLevel = req.compaction.level + 1;
  try {
    const out = await runMerge(req.compaction, {
      opts: req.opts,
      table: (f) => {
        let t = readers.get(f.number);
        if (!t) {
          t = TableReader.open(tablePath(req.dir, f.number), f.number, undefined, undefined, false);
          readers.set(f.number, t);
        }
        return t;
      },
      newTable: () => {
        if (crashAfterOutputs >= 0 && crashAfterOutputs-- === 0) {
          setTimeout(() => {
            throw new Error("injected worker crash");
          });
          return new Promise<never>(() => {});
        }
        // Pre-reserved numbers first: the main thread may be too busy to answer.
        const n = req.fileNumbers?.shift();
        if (n !== undefined) return { number: n, path: tablePath(req.dir, n) };
        return new Promise((resolve) => {
          allocWaiters.push((number) => resolve({ number, path: tablePath(req.dir, number) }));
          self.postMessage({ type: "alloc", id: req.id } satisfies WorkerMessage);
        });
      },
      smallestSnapshot: req.smallestSnapshot,
      isBaseLevelForKey: (uk) => {
        for (let l = outLevel + 1; l < v.levels.length; l++) {
          const files = v.levels[l];
          const i = v.findFile(l, uk);
          if (i < files.length && compareBytes(uk, userKeyOf(files[i].smallest)) >= 0) return false;
        }
        return true;
      },
      yield: () => {
        if (req.ioSignal && Atomics.load(req.ioSignal, 1) === 1) throw new ClosedError("database");
        return yieldToMessages();
      },
      beforeIo: req.ioSignal ? () => yieldIo(req.ioSignal!) : undefined,
    });
    syncDir(req.dir);
    self.postMessage({ type: "done", id: req.id, ...out } satisfies WorkerMessage);
  } catch (e) {
    postError(req.id, e);
  } finally {
    for (const t of readers.values()) t.close();
  }
}

self.on("message", (m) => {
  if (m.type === "merge") merge(fromWire(m) as MergeRequest);
  else if (m.type === "flush") flush(fromWire(m) as FlushRequest);
  else if (m.type === "alloc") allocWaiters.shift()?.(m.number as number);
  else if (m.type === "crash-after-outputs") crashAfterOutputs = m.outputs as number;
});
