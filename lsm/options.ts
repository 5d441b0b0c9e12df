/**
 * Engine options and their defaults.
 * @module
 */
import { denoEnv, type Env } from "./env.ts";
import { InvalidArgumentError, type LsmError } from "./errors.ts";

/** Tuning options accepted by {@linkcode LsmDb.open}. All are optional. */
export interface LsmOptions {
  /** Bytes of memtable before it is frozen and flushed to L0. Default 8 MiB. */
  memtableBytes?: number;
  /** Target size of an SSTable data block before it is cut. Default 4 KiB. */
  blockBytes?: number;
  /** Capacity of the LRU data-block cache in bytes. Default 8 MiB (LevelDB's default). */
  blockCacheBytes?: number;
  /** Bloom filter bits per key (0 disables filters). Default 10. */
  bloomBitsPerKey?: number;
  /** Number of L0 files that triggers an L0->L1 compaction. Default 4. */
  l0CompactionTrigger?: number;
  /** Number of L0 files at which writes wait for compaction. Default 20. */
  l0StopTrigger?: number;
  /** Byte target of L1; deeper levels grow by `levelMultiplier`. Default 64 MiB. */
  levelBaseBytes?: number;
  /** Growth factor between level byte targets. Default 10. */
  levelMultiplier?: number;
  /** Compaction output files are cut at this size. Default 4 MiB. */
  targetFileBytes?: number;
  /** Default for the `sync` flag of writes. Default false. */
  sync?: boolean;
  /**
   * Keep a write-ahead log (default true). With false, writes live in memtables until they are
   * flushed: a crash loses what was not flushed, {@linkcode LsmDb.flush} (and a clean
   * {@linkcode LsmDb.close}) is the durable point, and `sync: true` writes are refused. For a
   * caller with its own log to replay from what the database holds (gokv's state machine
   * replays the Raft log). Write-ahead logs left by an earlier open are still replayed.
   */
  wal?: boolean;
  /** Create the directory/database when missing. Default true. */
  createIfMissing?: boolean;
  /** Fail when the database already exists. Default false. */
  errorIfExists?: boolean;
  /** Number of memtables (active + immutable) allowed before writes wait. Default 3. */
  maxMemtables?: number;
  /**
   * Run flushes and compaction merges in Workers (true, default) or on the
   * main thread in chunks between event-loop turns (false). Workers use the
   * real file system, so with another `env` the default is false and true is
   * rejected.
   */
  backgroundWorker?: boolean;
  /**
   * File system to use (default: the real one, {@linkcode denoEnv}). Tests pass
   * a `FaultEnv` (lsm/fault_env.ts) to simulate power loss and I/O errors.
   */
  env?: Env;
  /**
   * Called once when the database enters its failed state (the WAL failed:
   * `LsmError` code `WAL_FAILED`; background work failed: `BackgroundError`
   * or `CorruptionError`). From then on writes are refused until reopen. The
   * default logs the error to stderr. A server should report it and exit.
   */
  onFailure?: (error: LsmError) => void;
}

/** Options with every default filled in (the env is kept apart: it cannot go to a Worker). */
export type ResolvedOptions = Required<Omit<LsmOptions, "env" | "onFailure">>;

/** Default option values. */
export const DEFAULT_OPTIONS: ResolvedOptions = {
  memtableBytes: 8 << 20,
  blockBytes: 4096,
  blockCacheBytes: 8 << 20,
  bloomBitsPerKey: 10,
  l0CompactionTrigger: 4,
  l0StopTrigger: 20,
  levelBaseBytes: 64 << 20,
  levelMultiplier: 10,
  targetFileBytes: 4 << 20,
  sync: false,
  wal: true,
  createIfMissing: true,
  errorIfExists: false,
  maxMemtables: 3,
  backgroundWorker: true,
};

function positiveInt(name: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || Math.floor(v) !== v || v < min) {
    throw new InvalidArgumentError(`options.${name}`, `must be an integer >= ${min}`);
  }
  return v;
}

/** Validates options and fills in defaults. */
export function resolveOptions(o: LsmOptions = {}): ResolvedOptions {
  const r: ResolvedOptions = { ...DEFAULT_OPTIONS };
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || k === "env" || k === "onFailure") continue;
    if (!(k in DEFAULT_OPTIONS)) throw new InvalidArgumentError(`options.${k}`, "unknown option");
    (r as unknown as Record<string, unknown>)[k] = v;
  }
  positiveInt("memtableBytes", r.memtableBytes, 1024);
  positiveInt("blockBytes", r.blockBytes, 64);
  positiveInt("blockCacheBytes", r.blockCacheBytes, 0);
  positiveInt("bloomBitsPerKey", r.bloomBitsPerKey, 0);
  positiveInt("l0CompactionTrigger", r.l0CompactionTrigger, 1);
  positiveInt("l0StopTrigger", r.l0StopTrigger, r.l0CompactionTrigger + 1);
  positiveInt("levelBaseBytes", r.levelBaseBytes, 1024);
  positiveInt("levelMultiplier", r.levelMultiplier, 2);
  positiveInt("targetFileBytes", r.targetFileBytes, 1024);
  positiveInt("maxMemtables", r.maxMemtables, 2);
  for (
    const b of ["sync", "wal", "createIfMissing", "errorIfExists", "backgroundWorker"] as const
  ) {
    if (typeof r[b] !== "boolean") {
      throw new InvalidArgumentError(`options.${b}`, "must be boolean");
    }
  }
  if (r.sync && !r.wal) {
    throw new InvalidArgumentError("options.sync", "cannot be true without a WAL (wal: false)");
  }
  if (o.env !== undefined && o.env !== denoEnv) {
    if (o.backgroundWorker === true) {
      throw new InvalidArgumentError(
        "options.backgroundWorker",
        "Workers use the real file system; it cannot be true with another env",
      );
    }
    r.backgroundWorker = false;
  }
  return r;
}
