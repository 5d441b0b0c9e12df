/**
 * Typed errors raised by the Raft core and its driver. Callers test them with `instanceof` or by
 * `name`; each carries the structured fields a caller needs to react (e.g. the leader to retry at).
 *
 * @module
 */
import type { NodeId } from "./types.ts";

/** A proposal, read or admin request reached a node that is not the leader. */
export class NotLeaderError extends Error {
  /** The leader this node knows of, or 0 when unknown. */
  readonly leaderId: NodeId;
  /** Creates the error. */
  constructor(leaderId: NodeId) {
    super(
      leaderId
        ? `not the leader; the leader is node ${leaderId}`
        : "not the leader; no leader known",
    );
    this.name = "NotLeaderError";
    this.leaderId = leaderId;
  }
}

/** A proposal was dropped: leadership is being transferred, or its entry was overwritten. */
export class ProposalDroppedError extends Error {
  /** Creates the error. */
  constructor(reason = "proposal dropped") {
    super(reason);
    this.name = "ProposalDroppedError";
  }
}

/** A membership change was proposed while another one is still pending or joint. */
export class ConfChangeInProgressError extends Error {
  /** Creates the error. */
  constructor(reason = "a configuration change is already in progress") {
    super(reason);
    this.name = "ConfChangeInProgressError";
  }
}

/** A membership change that cannot be applied (e.g. it would remove every voter). */
export class InvalidConfChangeError extends Error {
  /** Creates the error. */
  constructor(reason: string) {
    super(reason);
    this.name = "InvalidConfChangeError";
  }
}

/** A request did not complete within its deadline. */
export class TimeoutError extends Error {
  /** The deadline that elapsed, in milliseconds. */
  readonly timeoutMs: number;
  /** Creates the error. */
  constructor(what: string, timeoutMs: number) {
    super(`${what} timed out after ${timeoutMs} ms`);
    this.name = "TimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** The node was stopped while the request was waiting. */
export class StoppedError extends Error {
  /** Creates the error. */
  constructor() {
    super("raft node stopped");
    this.name = "StoppedError";
  }
}

/**
 * A committed membership change could not be applied (undecodable, or invalid against this
 * node's configuration). Fatal: continuing would let configurations diverge between nodes, so
 * the node halts (etcd-raft panics).
 */
export class ConfChangeApplyError extends Error {
  /** The log index of the entry. */
  readonly index: number;
  /** Creates the error. */
  constructor(index: number, reason: string) {
    super(`committed configuration change at index ${index} cannot be applied: ${reason}`);
    this.name = "ConfChangeApplyError";
    this.index = index;
  }
}
