/**
 * Advisory directory lock (flock on dir/LOCK) so two processes never open the
 * same database. The kernel releases it when the holder dies.
 * @module
 */
import { DatabaseLockedError } from "./errors.ts";
import { lockPath } from "./filenames.ts";

/** A held directory lock. */
export class DirLock {
  private constructor(private readonly file: Deno.FsFile) {}

  /** Acquires the lock or throws {@linkcode DatabaseLockedError}. */
  static acquire(dir: string): DirLock {
    const file = Deno.openSync(lockPath(dir), { read: true, write: true, create: true });
    let ok = false;
    try {
      ok = file.tryLockSync(true);
    } catch (e) {
      file.close();
      throw e;
    }
    if (!ok) {
      file.close();
      throw new DatabaseLockedError(dir);
    }
    return new DirLock(file);
  }

  /** Releases the lock. */
  release(): void {
    try {
      this.file.unlockSync();
    } finally {
      this.file.close();
    }
  }
}
