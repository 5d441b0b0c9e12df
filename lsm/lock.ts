/**
 * Advisory directory lock (flock on dir/LOCK) so two processes never open the
 * same database. The kernel releases it when the holder dies.
 * @module
 */
import { denoEnv, type Env, type EnvLock } from "./env.ts";
import { DatabaseLockedError } from "./errors.ts";
import { lockPath } from "./filenames.ts";

/** A held directory lock. */
export class DirLock {
  private constructor(private readonly lock: EnvLock) {}

  /** Acquires the lock or throws {@linkcode DatabaseLockedError}. */
  static acquire(dir: string, env: Env = denoEnv): DirLock {
    const lock = env.tryLockSync(lockPath(dir));
    if (lock === undefined) throw new DatabaseLockedError(dir);
    return new DirLock(lock);
  }

  /** Releases the lock. */
  release(): void {
    this.lock.release();
  }
}
