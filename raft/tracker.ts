/**
 * The leader's view of each member: replication progress (probe / replicate / snapshot states),
 * flow control (in-flight messages and bytes) and the membership configuration.
 *
 * @module
 */
import { jointCommitted, jointVote, type VoteResult } from "./quorum.ts";
import type { ConfState, NodeId, Snapshot } from "./types.ts";

/** A sliding window of in-flight App messages, by last index and size. */
export class Inflights {
  private idx: number[] = [];
  private sizes: number[] = [];
  private head = 0;
  /** Bytes in flight. */
  bytes = 0;

  constructor(readonly maxCount: number, readonly maxBytes: number) {}

  /** Number of messages in flight. */
  get count(): number {
    return this.idx.length - this.head;
  }

  /** Records an App message whose last entry is `index`. */
  add(index: number, bytes: number): void {
    this.idx.push(index);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  /** Frees every message whose last index is ≤ `to`. */
  freeLE(to: number): void {
    while (this.head < this.idx.length && this.idx[this.head] <= to) {
      this.bytes -= this.sizes[this.head];
      this.head++;
    }
    if (this.head === this.idx.length) {
      this.idx.length = 0;
      this.sizes.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.idx = this.idx.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }

  /** Frees the oldest message in flight (used when responses may have been lost). */
  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.idx[this.head]);
  }

  /** True when no more messages may be sent. */
  full(): boolean {
    return this.count >= this.maxCount || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }

  reset(): void {
    this.idx.length = 0;
    this.sizes.length = 0;
    this.head = 0;
    this.bytes = 0;
  }
}

/** How the leader currently replicates to a member. */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** The leader's record of one member. */
export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** The leader tick at which the newest heartbeat this member acknowledged was sent (-1: none). */
  leaseAck = -1;
  /** In probe state: an App was sent and not yet answered. */
  msgAppFlowPaused = false;
  inflights: Inflights;
  isLearner: boolean;
  /** In snapshot state: the snapshot being streamed, bytes acknowledged and bytes sent. */
  snap: Snapshot | null = null;
  snapAcked = 0;
  snapSent = 0;
  snapProgressed = false;

  constructor(next: number, maxInflight: number, maxInflightBytes: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight, maxInflightBytes);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
    this.snap = null;
    this.snapAcked = 0;
    this.snapSent = 0;
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const ps = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, ps + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snap: Snapshot): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snap.meta.index;
    this.snap = snap;
  }

  /** Records an acknowledged index; false when stale. */
  maybeUpdate(n: number): boolean {
    if (n <= this.match) return false;
    this.match = n;
    if (this.next < n + 1) this.next = n + 1;
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Handles a rejection of the App at `rejected`; false when stale. */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Records that an App with `entries` entries of `bytes` bytes was sent. */
  sentEntries(entries: number, bytes: number): void {
    if (this.state === "replicate") {
      if (entries > 0) {
        this.next += entries;
        this.inflights.add(this.next - 1, bytes);
      }
    } else if (this.state === "probe") {
      this.msgAppFlowPaused = true;
    }
  }

  /** True when no App should be sent now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.msgAppFlowPaused;
      case "replicate":
        return this.inflights.full();
      default:
        return true;
    }
  }
}

/** A membership configuration as sets. */
export interface TrackerConfig {
  voters: Set<NodeId>;
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
}

/** Copies a configuration. */
export function cloneConfig(c: TrackerConfig): TrackerConfig {
  return {
    voters: new Set(c.voters),
    outgoing: new Set(c.outgoing),
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
  };
}

/** Converts a configuration to its wire/persisted form (sorted arrays). */
export function toConfState(c: TrackerConfig): ConfState {
  const s = (x: Set<NodeId>) => [...x].sort((a, b) => a - b);
  return {
    voters: s(c.voters),
    votersOutgoing: s(c.outgoing),
    learners: s(c.learners),
    learnersNext: s(c.learnersNext),
  };
}

/** Converts a persisted configuration to sets. */
export function fromConfState(cs: ConfState): TrackerConfig {
  return {
    voters: new Set(cs.voters),
    outgoing: new Set(cs.votersOutgoing),
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
  };
}

/** Tracks the configuration, each member's progress and the votes of an election. */
export class ProgressTracker {
  config: TrackerConfig = {
    voters: new Set(),
    outgoing: new Set(),
    learners: new Set(),
    learnersNext: new Set(),
  };
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(readonly maxInflight: number, readonly maxInflightBytes: number) {}

  isJoint(): boolean {
    return this.config.outgoing.size > 0;
  }

  /** Every voter of either half of the configuration. */
  voterIds(): NodeId[] {
    const s = new Set(this.config.voters);
    for (const id of this.config.outgoing) s.add(id);
    return [...s].sort((a, b) => a - b);
  }

  isVoter(id: NodeId): boolean {
    return this.config.voters.has(id) || this.config.outgoing.has(id);
  }

  committed(): number {
    return jointCommitted(this.config.voters, this.config.outgoing, (id) => {
      const pr = this.progress.get(id);
      return pr ? pr.match : 0;
    });
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): VoteResult {
    return jointVote(this.config.voters, this.config.outgoing, this.votes);
  }

  /** Whether a quorum was recently active (self counts as active). */
  quorumActive(self: NodeId): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      votes.set(id, id === self || pr.recentActive);
    }
    return jointVote(this.config.voters, this.config.outgoing, votes) === "won";
  }
}
