/**
 * gokv LSM-tree storage engine: a durable, crash-safe ordered key-value store.
 *
 * ```ts
 * import { LsmDb } from "./mod.ts";
 * const dir = await Deno.makeTempDir(); // any directory; one open handle at a time
 * const db = await LsmDb.open(dir, { memtableBytes: 8 << 20 });
 * await db.put("user:1", "ada", { sync: true });
 * for await (const [k, v] of db.scan({ prefix: "user:" })) console.log(k, v);
 * await db.close();
 * ```
 * @module
 */
export {
  type BatchOperation,
  type CompactRange,
  type LevelStats,
  LsmDb,
  type LsmStats,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  type ScanOptions,
  Snapshot,
  type WriteOptions,
} from "./db.ts";
export { DEFAULT_OPTIONS, type LsmOptions, type ResolvedOptions } from "./options.ts";
export {
  BackgroundError,
  ClosedError,
  CorruptionError,
  DatabaseLockedError,
  InvalidArgumentError,
  LsmError,
} from "./errors.ts";
export type { Bytes } from "./bytes.ts";
export {
  denoEnv,
  type DirEntry,
  type Env,
  type EnvFile,
  type EnvLock,
  type FileInfo,
  mkdirDurable,
  type OpenOptions,
  writeFileAtomicSync,
  writeFully,
} from "./env.ts";
