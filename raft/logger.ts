/**
 * The logging interface used across gokv. The core and the libraries take a {@link Logger};
 * server/log.ts provides the structured text/JSON implementation.
 *
 * @module
 */

/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A leveled, structured logger. */
export interface Logger {
  /** Detail for debugging. */
  debug(msg: string, fields?: LogFields): void;
  /** Normal operation. */
  info(msg: string, fields?: LogFields): void;
  /** Something unexpected that the node survives. */
  warn(msg: string, fields?: LogFields): void;
  /** A failure. */
  error(msg: string, fields?: LogFields): void;
}

/** A logger that discards everything. */
export const nullLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
