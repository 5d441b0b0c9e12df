/**
 * Durable file helpers: atomic replace (temporary file, fsync, rename, directory fsync).
 *
 * @module
 */
import { join } from "node:path";
import { StoreLockedError } from "./errors.ts";

/** An exclusive advisory lock on `dir/LOCK` (released by the kernel if the process dies). */
export interface DirLock {
  /** Releases the lock. */
  release(): void;
}

/** Takes the lock or throws {@link StoreLockedError}. */
export function lockDir(dir: string): DirLock {
  const file = Deno.openSync(join(dir, "LOCK"), { read: true, write: true, create: true });
  let ok = false;
  try {
    ok = file.tryLockSync(true);
  } finally {
    if (!ok) file.close();
  }
  if (!ok) throw new StoreLockedError(dir);
  return {
    release() {
      try {
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}

/** Fsyncs a directory so that renames and creations in it are durable. */
export function fsyncDir(dir: string): void {
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } finally {
    d.close();
  }
}

/** Writes `data` to `dir/name` atomically and durably. */
export function writeFileAtomic(dir: string, name: string, data: Uint8Array): void {
  const tmp = join(dir, `${name}.tmp`);
  const f = Deno.openSync(tmp, { write: true, create: true, truncate: true });
  try {
    let off = 0;
    while (off < data.length) off += f.writeSync(data.subarray(off));
    f.syncSync();
  } finally {
    f.close();
  }
  Deno.renameSync(tmp, join(dir, name));
  fsyncDir(dir);
}

/** Writes all of `data` at the file's current position. */
export function writeAll(f: Deno.FsFile, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += f.writeSync(data.subarray(off));
}

/** Reads a file, or returns undefined when it does not exist. */
export function readFileIfExists(path: string): Uint8Array | undefined {
  try {
    return Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Removes a file if it exists. */
export function removeIfExists(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
