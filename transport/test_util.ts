/**
 * Helpers for the transport tests.
 *
 * @module
 */
import type { LogFields, Logger } from "../raft/logger.ts";

/** Polls `cond` every few ms (running `each` first) until it holds; throws after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean,
  timeoutMs: number,
  what: string,
  each?: () => void,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    each?.();
    if (cond()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A logger that records warnings (and counts the rest) for assertions. */
export class RecordingLogger implements Logger {
  /** Warnings: message and fields. */
  readonly warnings: { msg: string; fields?: LogFields }[] = [];
  /** Errors. */
  readonly errors: { msg: string; fields?: LogFields }[] = [];
  debug(): void {}
  info(): void {}
  warn(msg: string, fields?: LogFields): void {
    this.warnings.push({ msg, fields });
  }
  error(msg: string, fields?: LogFields): void {
    this.errors.push({ msg, fields });
  }
}
