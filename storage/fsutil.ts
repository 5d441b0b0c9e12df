/**
 * Durable file helpers over the engine's file-system interface ({@link Env}, lsm/env.ts): every
 * storage backend does its I/O through an `Env`, so the power-loss tests can run them on the
 * fault-injecting in-memory one (lsm/fault_env.ts).
 *
 * @module
 */
import { join } from "node:path";
import { denoEnv, type Env, mkdirDurable, writeFileAtomicSync, writeFully } from "../lsm/env.ts";
import { StoreLockedError } from "./errors.ts";

export { denoEnv, type Env, type EnvFile } from "../lsm/env.ts";
export { mkdirDurable, writeFully };

/** An exclusive advisory lock on `dir/LOCK` (released by the kernel if the process dies). */
export interface DirLock {
  /** Releases the lock. */
  release(): void;
}

/** Takes the lock or throws {@link StoreLockedError}. */
export function lockDir(env: Env, dir: string): DirLock {
  const lock = env.tryLockSync(join(dir, "LOCK"));
  if (!lock) throw new StoreLockedError(dir);
  return lock;
}

/** Writes `data` to `dir/name` atomically and durably (tmp, fdatasync, rename, directory fsync). */
export function writeFileAtomic(env: Env, dir: string, name: string, data: Uint8Array): void {
  writeFileAtomicSync(env, join(dir, name), data);
}

/** Reads a file, or returns undefined when it does not exist. */
export function readFileIfExists(env: Env, path: string): Uint8Array | undefined {
  try {
    return env.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Removes a file (or, with `recursive`, a directory tree) if it exists. */
export function removeIfExists(env: Env, path: string, recursive = false): void {
  try {
    env.removeSync(path, { recursive });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Fsyncs a directory so that renames, creations and removals in it are durable. */
export function fsyncDir(dir: string, env: Env = denoEnv): void {
  env.syncDirSync(dir);
}
