/**
 * Typed errors raised by the LSM engine. Every error extends {@linkcode LsmError}
 * and carries a stable `code` plus structured fields so callers can branch on them.
 * @module
 */

/** Base class of every error thrown by the engine. */
export class LsmError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;
  /** Creates an error with a stable code. */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LsmError";
    this.code = code;
  }
}

/** A caller passed an invalid key, value or option; nothing was written. */
export class InvalidArgumentError extends LsmError {
  /** Which argument was rejected (e.g. "key", "value", "options.memtableBytes"). */
  readonly argument: string;
  /** Creates an error for the named argument. */
  constructor(argument: string, message: string) {
    super("INVALID_ARGUMENT", `${argument}: ${message}`);
    this.name = "InvalidArgumentError";
    this.argument = argument;
  }
}

/** On-disk data failed validation (bad checksum, bad magic, truncated file...). */
export class CorruptionError extends LsmError {
  /** Path of the damaged file. */
  readonly file: string;
  /** Byte offset within the file where the damage was detected. */
  readonly offset: number;
  /** What was wrong. */
  readonly detail: string;
  /** Creates an error for damage in `file` at `offset`. */
  constructor(file: string, offset: number, detail: string) {
    super("CORRUPTION", `corruption in ${file} at offset ${offset}: ${detail}`);
    this.name = "CorruptionError";
    this.file = file;
    this.offset = offset;
    this.detail = detail;
  }
}

/**
 * Background work (a memtable flush or a compaction merge) failed, e.g. with
 * EIO or because its Worker crashed. The database stops background work and
 * refuses writes until it is reopened (reads keep working); `cause` holds the
 * original error. Corruption found by background work is a
 * {@linkcode CorruptionError} instead.
 */
export class BackgroundError extends LsmError {
  /** What failed. */
  readonly operation: "flush" | "compaction";
  /** Creates the error for a failed `operation`. */
  constructor(operation: "flush" | "compaction", cause: unknown) {
    super(
      "BACKGROUND_FAILED",
      `background ${operation} failed; database refuses writes until reopened: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.name = "BackgroundError";
    this.operation = operation;
  }
}

/** The database directory is locked by another process (or another open handle). */
export class DatabaseLockedError extends LsmError {
  /** Directory of the database. */
  readonly dir: string;
  /** Creates an error for the locked directory. */
  constructor(dir: string) {
    super("LOCKED", `database ${dir} is already open by another process (LOCK held)`);
    this.name = "DatabaseLockedError";
    this.dir = dir;
  }
}

/** An operation was attempted on a closed database or a released snapshot. */
export class ClosedError extends LsmError {
  /** Creates an error naming what is closed. */
  constructor(what = "database") {
    super("CLOSED", `${what} is closed`);
    this.name = "ClosedError";
  }
}
