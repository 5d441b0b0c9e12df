/**
 * Typed errors raised by the gokv client library. Test them with `instanceof` or by `name`.
 *
 * @module
 */

/** Base class of every error the client raises. */
export class GokvError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GokvError";
  }
}

/** The key (or member) does not exist. Not a failure of the cluster. `Client.get` does not
 * throw it (it returns `undefined`); `removeMember` of an unknown id does. */
export class NotFoundError extends GokvError {
  /** Creates the error for `what`. */
  constructor(readonly what: string) {
    super(`${what} not found`);
    this.name = "NotFoundError";
  }
}

/** The operation did not complete in time. A write may still have taken effect (a retry with
 * the same session would not apply it twice). */
export class TimeoutError extends GokvError {
  /** Creates the error. */
  constructor(message: string, readonly timeoutMs: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/** No endpoint could serve the request (no leader, nodes unreachable, client closed...). */
export class UnavailableError extends GokvError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnavailableError";
  }
}

/** The request was refused as invalid (empty key, unknown node, bad address...). */
export class InvalidArgumentError extends GokvError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "InvalidArgumentError";
  }
}

/** The contacted node is not the leader (handled inside the client; exported for servers and
 * tests). */
export class NotLeaderError extends GokvError {
  /** Creates the error with the leader hint (0 / "" when unknown). */
  constructor(readonly leaderId: number, readonly leaderAddr: string, message = "not the leader") {
    super(message);
    this.name = "NotLeaderError";
  }
}

/**
 * The write's client session is unknown to the cluster or expired (unused for longer than the
 * cluster's session idle timeout, or evicted from the bounded session table): the state machine
 * refused the write and applied NOTHING for this request. The {@link Client} opens a new session
 * by itself and retries when no earlier attempt of the write may have been applied; otherwise it
 * throws this error (`earlierAttemptUncertain` true: an earlier attempt timed out, so the write may
 * have been applied by that attempt — read before writing again).
 */
export class SessionExpiredError extends GokvError {
  /** Creates the error. */
  constructor(message: string, readonly earlierAttemptUncertain = false) {
    super(message);
    this.name = "SessionExpiredError";
  }
}

/** The node needs a valid bearer token (`--token` / `GOKV_TOKEN`, `ClientOptions.token`) and got
 * none, or one it does not know: HTTP 401, protocol status `Unauthenticated`. */
export class UnauthenticatedError extends GokvError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UnauthenticatedError";
  }
}

/** The token is valid but its role or key prefixes do not allow the request: HTTP 403, protocol
 * status `PermissionDenied`. */
export class PermissionDeniedError extends GokvError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "PermissionDeniedError";
  }
}

/** The server reported an internal failure. */
export class InternalError extends GokvError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "InternalError";
  }
}

/** A request over one of gokv's limits (key or value size, frame, page, body...): `limit`
 * names it, `max` is its value. Never retried. Defined with the limits in config/limits.ts. */
export { LimitError } from "../config/limits.ts";

/**
 * An atomic operation's `sum`, `min` or `max` met a stored value that is not a u64 (or a bounded
 * sum left its range): the whole operation was aborted and nothing applied. The message is Deno
 * KV's (`Failed to perform 'sum' mutation on a non-U64 value in the database`).
 */
export class MutationTypeError extends GokvError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "MutationTypeError";
  }
}

/**
 * A watch asked to resume after a versionstamp that the node's bounded change history no longer
 * reaches back to (or the node's state was replaced by a snapshot since). `oldest` is the oldest
 * versionstamp (20 hex digits) a watch on that node can resume after; to continue without a
 * gap, read the current state again (a watch without `after`).
 */
export class WatchCompactedError extends GokvError {
  /** Creates the error. */
  constructor(message: string, readonly oldest: string) {
    super(message);
    this.name = "WatchCompactedError";
  }
}
