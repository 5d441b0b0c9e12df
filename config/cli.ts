/**
 * Shared command-line conventions: exit codes and the usage error.
 *
 * @module
 */

/** Exit code for success. */
export const EXIT_OK = 0;
/** Exit code when an operation failed. */
export const EXIT_FAILED = 1;
/** Exit code for a usage or configuration error. */
export const EXIT_USAGE = 2;

/** A command-line usage error (unknown command or flag, missing argument): exit code 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Turns a `node:util` parseArgs error into a {@link UsageError}; anything else passes through. */
export function asUsageError(e: unknown): unknown {
  const code = (e as { code?: string })?.code;
  if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
    return new UsageError((e as Error).message);
  }
  return e;
}
