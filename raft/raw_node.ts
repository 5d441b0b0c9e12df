/**
 * RawNode: the deterministic, thread-free interface to the Raft core (etcd-raft style). The
 * caller ticks it, steps network messages into it, and repeatedly takes a {@link Ready},
 * persists and applies it, then calls {@link RawNode.advance}.
 *
 * Contract of a Ready:
 * 1. send `messages` at once (leader traffic of an already durable term);
 * 2. persist `snapshot` (LogStore.applySnapshot + StateMachine.restore), `entries`
 *    (LogStore.append) and `hardState` (LogStore.setHardState), then `await LogStore.sync()`;
 * 3. send `persistedMessages`;
 * 4. apply `committedEntries` in order (ConfChange entries: {@link RawNode.applyConfChange});
 * 5. serve `readStates` once applied ≥ their index;
 * 6. call `advance(rd)`.
 * Messages may be stepped in between `ready()` and `advance()`; the next `ready()` (after
 * `advance`) then carries what they produced.
 *
 * @module
 */
import { decodeConfChange, encodeConfChange } from "./confchange_codec.ts";
import { Raft, type RaftConfig, type ReadState, type Role } from "./raft.ts";
import type { LogStore } from "./storage.ts";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type MemberContext,
  type Message,
  message,
  MessageType,
  type NodeId,
  NONE,
  type Snapshot,
} from "./types.ts";
import { toConfState } from "./tracker.ts";
import { ConfChangeApplyError } from "./errors.ts";

export type { RaftConfig, ReadState, Role };
export {
  ConfChangeApplyError,
  ConfChangeInProgressError,
  InvalidConfChangeError,
  NotLeaderError,
  ProposalDroppedError,
} from "./errors.ts";

/** Volatile state worth reporting when it changes. */
export interface SoftState {
  /** The known leader (0 if none). */
  lead: NodeId;
  /** "follower" | "pre-candidate" | "candidate" | "leader" | "learner". */
  role: string;
}

/** A batch of work for the driver (see the module documentation for the order). */
export interface Ready {
  /** Changed leader/role, or null. */
  softState: SoftState | null;
  /** The hard state to persist, or null when unchanged. */
  hardState: HardState | null;
  /** Entries to append to the LogStore. */
  entries: Entry[];
  /** A received snapshot to install, or null. */
  snapshot: Snapshot | null;
  /** Committed entries to apply, in order. */
  committedEntries: Entry[];
  /** Messages that may be sent at once, before this Ready is persisted. */
  messages: Message[];
  /** Messages to send only after this Ready's hard state, entries and snapshot are durable. */
  persistedMessages: Message[];
  /** Results of ReadIndex requests. */
  readStates: ReadState[];
}

/** Replication progress of one member, as seen by the leader. */
export interface ProgressStatus {
  /** Highest index known replicated. */
  match: number;
  /** Next index to send. */
  next: number;
  /** "probe" | "replicate" | "snapshot". */
  state: string;
  /** Whether the member is a learner. */
  isLearner: boolean;
}

/** A snapshot of a node's Raft state for observability and tests. */
export interface RaftStatus {
  id: NodeId;
  term: number;
  vote: NodeId;
  commit: number;
  applied: number;
  /** "follower" | "pre-candidate" | "candidate" | "leader" | "learner". */
  role: string;
  lead: NodeId;
  conf: ConfState;
  lastIndex: number;
  firstIndex: number;
  /** Leader only: per-member progress. */
  progress?: Map<NodeId, ProgressStatus>;
  /** Leader only: the node leadership is being transferred to (0 if none). */
  leadTransferee?: NodeId;
}

const LOCAL_TYPES = new Set<MessageType>([
  MessageType.Hup,
  MessageType.Beat,
  MessageType.Prop,
  MessageType.Unreachable,
  MessageType.CheckQuorum,
]);

/** Messages that depend only on the sender's (durable) term, not on entries or votes. */
const TERM_ONLY_TYPES = new Set<MessageType>([
  MessageType.App,
  MessageType.Heartbeat,
  MessageType.Snap,
  MessageType.HeartbeatResp,
  MessageType.SnapResp,
  MessageType.ReadIndexResp,
  MessageType.TimeoutNow,
  MessageType.TransferLeader,
]);

const MAX_APPLY_BYTES = 64 << 20;

/** The deterministic Raft node. */
export class RawNode {
  /** The protocol state machine (exposed for tests and tools). */
  readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private durableTerm: number;

  /** Creates a node from the durable state in `storage`. */
  constructor(config: RaftConfig, storage: LogStore) {
    this.raft = new Raft(config, storage);
    this.prevSoft = this.softState();
    this.prevHard = this.raft.hardState();
    this.durableTerm = this.prevHard.term;
  }

  /**
   * Bootstraps a brand-new cluster member: writes entry 1 (term 1), a ConfChange adding every
   * voter, and a hard state committing it. Every initial member must be bootstrapped with the
   * same voters. The caller must `await storage.sync()` before constructing the RawNode.
   * Throws when the store is not empty.
   */
  static bootstrap(storage: LogStore, voters: NodeId[]): void {
    if (voters.length === 0) throw new Error("bootstrap: no voters");
    if (storage.lastIndex() !== 0 || storage.initialState().hardState.term !== 0) {
      throw new Error("bootstrap: log store is not empty");
    }
    const cc: ConfChange = {
      changes: [...new Set(voters)].sort((a, b) => a - b).map((nodeId) => ({
        type: ConfChangeType.AddNode,
        nodeId,
      })),
      context: new Uint8Array(0),
    };
    storage.append([{ term: 1, index: 1, type: EntryType.ConfChange, data: encodeConfChange(cc) }]);
    storage.setHardState({ term: 1, vote: NONE, commit: 1 });
  }

  private softState(): SoftState {
    const r = this.raft;
    return { lead: r.lead, role: r.isLearner && r.role === "follower" ? "learner" : r.role };
  }

  /**
   * Advances the logical clock by one tick. `now` is the driver's monotonic time in ms (only
   * lease reads use it; see {@link RaftConfig.leaseRead}).
   */
  tick(now?: number): void {
    if (now !== undefined) this.raft.setNow(now);
    this.raft.tick();
  }

  /** Steps a message received from the network (at the driver's monotonic time `now` in ms,
   * when given). Local-only kinds and misaddressed messages are ignored; malformed ones are
   * dropped without throwing. */
  step(msg: Message, now?: number): void {
    if (now !== undefined) this.raft.setNow(now);
    if (!msg || LOCAL_TYPES.has(msg.type) || !msg.from) return;
    if (msg.to !== NONE && msg.to !== this.raft.id) return;
    if (!Array.isArray(msg.entries) || !(msg.context instanceof Uint8Array)) return;
    this.raft.step(msg);
  }

  /** Proposes data as leader; returns the entry's index and term. */
  propose(data: Uint8Array): { index: number; term: number } {
    return this.raft.propose(data);
  }

  /** Proposes a membership change as leader (one at a time). */
  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    return this.raft.proposeConfChange(cc);
  }

  /**
   * Requests a linearizable read point; the answer comes back as a ReadState with `ctx`. `now`
   * (the driver's monotonic time in ms) must be current for a lease read to be served.
   */
  readIndex(ctx: Uint8Array, now?: number): void {
    if (now !== undefined) this.raft.setNow(now);
    this.raft.step(message({ type: MessageType.ReadIndex, from: this.raft.id, context: ctx }));
  }

  /** Asks the leader (directly or via this follower) to hand leadership to `to`. */
  transferLeader(to: NodeId): void {
    this.raft.step(message({ type: MessageType.TransferLeader, from: to }));
  }

  /** Starts an election now (with a pre-vote round when enabled). */
  campaign(): void {
    this.raft.step(message({ type: MessageType.Hup }));
  }

  /**
   * Applies a committed ConfChange (the driver calls it while applying the entry at `index`).
   * Throws {@link ConfChangeApplyError} when it does not apply: the driver must halt.
   */
  applyConfChange(cc: ConfChange, index = 0): ConfState {
    return this.raft.applyConfChange(cc, index);
  }

  /**
   * Applies the ConfChange encoded in a committed entry. Throws {@link ConfChangeApplyError}
   * when it cannot be decoded or applied: the driver must halt.
   */
  applyConfChangeEntry(e: Entry): { cc: ConfChange; conf: ConfState } {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch (err) {
      throw new ConfChangeApplyError(e.index, String(err));
    }
    return { cc, conf: this.applyConfChange(cc, e.index) };
  }

  /**
   * Per member of the current configuration, the context of the conf change that added it
   * (members whose change carried one; sorted by id): what a snapshot taken now carries in
   * `SnapshotMeta.memberContexts`.
   */
  memberContexts(): MemberContext[] {
    return this.raft.memberContextList();
  }

  /** Reports that `id` could not be reached (the leader slows down replication to it). */
  reportUnreachable(id: NodeId): void {
    this.raft.step(message({ type: MessageType.Unreachable, from: id }));
  }

  /** Whether a Ready with work is available. */
  hasReady(): boolean {
    const r = this.raft;
    if (r.role === "leader" && (r.needBcast || r.readOnly.queued.length > 0)) return true;
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    const u = r.log.unstable;
    if (u.offsetInProgress < u.offset + u.entries.length) return true;
    if (u.snapshot && !u.snapshotInProgress) return true;
    if (r.log.hasNextCommittedEnts()) return true;
    const s = this.softState();
    if (s.lead !== this.prevSoft.lead || s.role !== this.prevSoft.role) return true;
    const hs = r.hardState();
    const p = this.prevHard;
    return hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit;
  }

  /** Takes the pending work. Call {@link advance} with it once it is persisted and applied. */
  ready(): Ready {
    const r = this.raft;
    if (r.role === "leader") {
      if (r.needBcast) {
        r.needBcast = false;
        for (const id of r.trk.progress.keys()) {
          if (id === r.id) continue;
          let n = 0;
          while (r.sendAppend(id, false) && ++n < 1024) { /* fill the window */ }
        }
      }
      r.flushReads();
    }
    const s = this.softState();
    const softState = s.lead !== this.prevSoft.lead || s.role !== this.prevSoft.role ? s : null;
    const hs = r.hardState();
    const p = this.prevHard;
    const hardState = hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit
      ? hs
      : null;
    const u = r.log.unstable;
    const entries = u.nextEntries();
    const snapshot = u.snapshot && !u.snapshotInProgress ? u.snapshot : null;
    const committedEntries = r.log.nextCommittedEnts(MAX_APPLY_BYTES);
    const messages: Message[] = [];
    const persistedMessages: Message[] = [];
    for (const m of r.msgs) {
      if (this.#immediate(m)) messages.push(m);
      else persistedMessages.push(m);
    }
    const rd: Ready = {
      softState,
      hardState,
      entries,
      snapshot,
      committedEntries,
      messages,
      persistedMessages,
      readStates: r.readStates,
    };
    // Accept: the next Ready carries only what is new.
    if (softState) this.prevSoft = s;
    if (hardState) this.prevHard = hs;
    u.acceptInProgress();
    if (committedEntries.length) {
      const last = committedEntries[committedEntries.length - 1].index;
      if (last > r.log.applying) r.log.applying = last;
    }
    r.msgs = [];
    r.readStates = [];
    return rd;
  }

  /** Whether `m` may be sent before anything of its Ready is persisted ({@link Ready.messages}). */
  #immediate(m: Message): boolean {
    return m.type === MessageType.ReadIndex ||
      (TERM_ONLY_TYPES.has(m.type) && m.term === this.durableTerm);
  }

  /**
   * Takes the messages the next Ready would carry in {@link Ready.messages} (those that need
   * nothing persisted first: heartbeats and their responses, appends from a leader of a durable
   * term, read-index traffic), leaving the others for it. The driver sends them while a Ready
   * is still being persisted or applied, so that a long apply (the state machine waiting for its
   * compaction) never silences a node's heartbeats and responses: the leader would step down for
   * want of a quorum, and a follower would start an election, though every node is up.
   */
  takeImmediateMessages(): Message[] {
    const r = this.raft;
    if (r.msgs.length === 0) return [];
    const out: Message[] = [];
    const keep: Message[] = [];
    for (const m of r.msgs) (this.#immediate(m) ? out : keep).push(m);
    r.msgs = keep;
    return out;
  }

  /** Marks a Ready as persisted and applied. */
  advance(rd: Ready): void {
    const r = this.raft;
    if (rd.hardState && rd.hardState.term > this.durableTerm) this.durableTerm = rd.hardState.term;
    if (rd.snapshot) {
      r.log.stableSnapTo(rd.snapshot.meta.index);
      r.log.appliedTo(rd.snapshot.meta.index);
    }
    if (rd.entries.length) {
      const last = rd.entries[rd.entries.length - 1];
      r.log.stableTo(last.index, last.term);
    }
    if (rd.committedEntries.length) {
      r.log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
    }
    r.selfPersisted(r.log.persistedLastIndex());
    r.maybeAutoLeave();
    r.afterApply();
  }

  /** The node's current state. */
  status(): RaftStatus {
    const r = this.raft;
    const st: RaftStatus = {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      role: this.softState().role,
      lead: r.lead,
      conf: toConfState(r.trk.config),
      lastIndex: r.log.lastIndex(),
      firstIndex: r.log.firstIndex(),
    };
    if (r.role === "leader") {
      const m = new Map<NodeId, ProgressStatus>();
      for (const [id, pr] of r.trk.progress) {
        m.set(id, { match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner });
      }
      st.progress = m;
      st.leadTransferee = r.leadTransferee;
    }
    return st;
  }
}
