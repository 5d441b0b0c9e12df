/**
 * Typed errors raised by the storage backends.
 *
 * @module
 */

/** Persistent data failed a checksum or structural check somewhere other than a torn tail. */
export class CorruptionError extends Error {
  /** The file that holds the damaged data. */
  readonly file: string;
  /** The byte offset (or line number for line-based files) where the damage starts. */
  readonly offset: number;
  /** A short machine-friendly reason, e.g. `"checksum"`, `"length"`, `"gap"`. */
  readonly reason: string;

  /** Creates the error. */
  constructor(file: string, offset: number, reason: string, detail?: string) {
    super(`corrupt data in ${file} at ${offset}: ${reason}${detail ? ` (${detail})` : ""}`);
    this.name = "CorruptionError";
    this.file = file;
    this.offset = offset;
    this.reason = reason;
  }
}

/** Bytes that are not a valid encoding of what the caller expected (command, snapshot, record). */
export class DecodeError extends Error {
  /** What was being decoded, e.g. `"command"` or `"snapshot"`. */
  readonly what: string;

  /** Creates the error. */
  constructor(what: string, detail: string) {
    super(`cannot decode ${what}: ${detail}`);
    this.name = "DecodeError";
    this.what = what;
  }
}

/** An operation on a store that has been closed. */
export class StoreClosedError extends Error {
  /** Creates the error. */
  constructor(what: string) {
    super(`${what} is closed`);
    this.name = "StoreClosedError";
  }
}

/** A log append that would leave a hole (first new index past lastIndex + 1). */
export class LogGapError extends Error {
  /** The index the log expected at most. */
  readonly expected: number;
  /** The first index that was offered. */
  readonly got: number;

  /** Creates the error. */
  constructor(expected: number, got: number) {
    super(`append would leave a gap: expected index <= ${expected}, got ${got}`);
    this.name = "LogGapError";
    this.expected = expected;
    this.got = got;
  }
}

/** Another process (or another open store in this process) holds the directory. */
export class StoreLockedError extends Error {
  /** The locked directory. */
  readonly dir: string;

  /** Creates the error. */
  constructor(dir: string) {
    super(`storage directory ${dir} is in use by another process`);
    this.name = "StoreLockedError";
    this.dir = dir;
  }
}

/**
 * An I/O operation of a store failed (write, fdatasync, rename, ...), or the process it ran in
 * crashed under it. What reached the disk is unknown, so the store is failed for good: every
 * later write or sync rejects with this same error (a failed fsync is never retried — the kernel
 * may have dropped the dirty pages) and the node must halt, exit non-zero and be restarted, when
 * recovery reads what really is on disk. `fatal` is always true (a marker for callers that cannot
 * import this class).
 */
export class StorageIoError extends Error {
  /** Which store failed, e.g. `"segment log"`. */
  readonly store: string;
  /** The operation that failed, e.g. `"sync"`. */
  readonly op: string;
  /** Always true: the store cannot continue. */
  readonly fatal = true;

  /** Creates the error for `op` of `store`, caused by `cause`. */
  constructor(store: string, op: string, cause: unknown) {
    super(`${store}: ${op} failed, storage is unusable until restart: ${String(cause)}`, {
      cause,
    });
    this.name = "StorageIoError";
    this.store = store;
    this.op = op;
  }
}
