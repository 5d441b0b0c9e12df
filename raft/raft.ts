/**
 * The deterministic Raft state machine (roles, elections, replication, reads, membership,
 * leadership transfer and chunked snapshots). It performs no I/O: it reads the {@link LogStore}
 * synchronously, queues outgoing messages and is driven by {@link RawNode}.
 *
 * Section references are to Ongaro & Ousterhout, "In Search of an Understandable Consensus
 * Algorithm (Extended Version)" and Ongaro's thesis; the structure follows etcd-io/raft.
 *
 * @module
 */
import { applyChange } from "./confchange.ts";
import {
  ConfChangeApplyError,
  ConfChangeInProgressError,
  InvalidConfChangeError,
  NotLeaderError,
  ProposalDroppedError,
} from "./errors.ts";
import { entrySize, RaftLog } from "./log.ts";
import { type Logger, nullLogger } from "./logger.ts";
import { jointCommitted, jointVote } from "./quorum.ts";
import { ReadOnly } from "./read_only.ts";
import { CompactedError, type LogStore } from "./storage.ts";
import {
  fromConfState,
  Progress,
  ProgressTracker,
  toConfState,
  type TrackerConfig,
} from "./tracker.ts";
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
import { decodeConfChange, encodeConfChange } from "./confchange_codec.ts";

/** Configuration of a Raft node. */
export interface RaftConfig {
  /** This node's id (non-zero). */
  id: NodeId;
  /** T: the election timeout is randomized in [T, 2T) ticks. */
  electionTick: number;
  /** Ticks between heartbeats (must be < electionTick). */
  heartbeatTick: number;
  /** Run a pre-vote round before a real election (thesis §9.6). */
  preVote: boolean;
  /** A leader steps down when it has not heard from a quorum for an election timeout. */
  checkQuorum: boolean;
  /** Maximum bytes of entries per App message. */
  maxSizePerMsg: number;
  /** Maximum App messages in flight per follower in replicate mode. */
  maxInflightMsgs: number;
  /** Maximum bytes of entries in flight per follower (0 = unlimited). */
  maxInflightBytes: number;
  /** InstallSnapshot chunk size in bytes (default 1 MiB). */
  snapshotChunkBytes?: number;
  /**
   * Serve ReadIndex from the leader lease without a heartbeat round (requires checkQuorum).
   * The lease is dated with the monotonic time the driver passes to `tick`, `step` and
   * `readIndex` (without it no lease ever holds): a quorum acknowledged a heartbeat sent at
   * `s`, so the lease ends at `s + electionTick × tickMs × (1 − leaseDriftBound) − tickMs`.
   */
  leaseRead?: boolean;
  /** Milliseconds per tick: converts the election timeout into time for the lease. */
  tickMs?: number;
  /** Largest relative clock-rate difference between two nodes for the lease (default 0.05). */
  leaseDriftBound?: number;
  /** Random source in [0,1) for election timeouts. */
  random: () => number;
  /** Logger (default: discard). */
  logger?: Logger;
  /** The last applied index at restart. */
  applied?: number;
}

/** A node's role. */
export type Role = "follower" | "pre-candidate" | "candidate" | "leader";

/** The result of a ReadIndex request, delivered in a Ready. */
export interface ReadState {
  /** Serve the read once the applied index reaches this index. */
  index: number;
  /** The context passed to readIndex. */
  context: Uint8Array;
}

/** Vote context marking a campaign forced by leadership transfer (bypasses stickiness). */
export const TRANSFER_CONTEXT: Uint8Array = new Uint8Array([0x74]);
const EMPTY = new Uint8Array(0);
const SNAP_WINDOW_CHUNKS = 4;
/** Hand-off attempts of a removed leader before it steps down (the first and one retry). */
const HANDOFF_ATTEMPTS = 2;

interface SnapReceive {
  /** The sender and its term: a transfer is never continued by chunks of another leader. */
  from: NodeId;
  leaderTerm: number;
  index: number;
  term: number;
  total: number;
  received: number;
  parts: Uint8Array[];
}

/** The Raft protocol state machine. */
export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: Role = "follower";
  isLearner = false;
  readonly log: RaftLog;
  readonly trk: ProgressTracker;
  /**
   * Per member of the configuration, the context of the conf change that last added it (only
   * non-empty ones): part of the replicated configuration, carried in snapshots
   * (`SnapshotMeta.memberContexts`) and rebuilt with it at restart.
   */
  memberContexts = new Map<NodeId, Uint8Array>();
  msgs: Message[] = [];
  readStates: ReadState[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  randomizedElectionTimeout = 0;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly leaseRead: boolean;
  readonly maxMsgSize: number;
  readonly snapChunk: number;
  readonly random: () => number;
  readonly logger: Logger;

  leadTransferee: NodeId = NONE;
  pendingConfIndex = 0;
  /** Hand-off attempts of this (removed) leader in its term. */
  private handOffAttempts = 0;
  /** Voters this (removed) leader already tried to hand off to in its term: never retried. */
  private handOffTried = new Set<NodeId>();
  private pendingTransferCampaign = false;
  /** Ticks since start. */
  private ticks = 0;
  /**
   * The latest monotonic time (ms) the driver supplied, or -1 when none yet: the only clock
   * of the core. Heartbeats carry it (a lower bound of their send time) and acknowledgements
   * echo it, so that the lease is dated at send time.
   */
  private now = -1;
  /** Lease length in ms (see {@link RaftConfig.leaseRead}); 0 when lease reads are off. */
  private readonly leaseMs: number;
  /** The election timeout in ms (electionTick × tickMs; 0 without tickMs). */
  private readonly electionMs: number;
  /** Time of the last leadership transfer this node started (for lease reads). */
  private lastTransferAt = -Infinity;
  readOnly = new ReadOnly();
  private pendingReadIndexMessages: Message[] = [];
  /** Entries were appended as leader: broadcast them at the next Ready. */
  needBcast = false;
  private snapRecv: SnapReceive | null = null;

  constructor(c: RaftConfig, storage: LogStore) {
    if (!c.id) throw new Error("raft: id must not be 0");
    if (c.heartbeatTick <= 0 || c.electionTick <= c.heartbeatTick) {
      throw new Error("raft: need 0 < heartbeatTick < electionTick");
    }
    this.id = c.id;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.preVote = c.preVote;
    this.checkQuorum = c.checkQuorum;
    this.leaseRead = !!c.leaseRead && c.checkQuorum;
    const tickMs = c.tickMs ?? 0;
    const drift = Math.min(Math.max(c.leaseDriftBound ?? 0.05, 0), 1);
    this.electionMs = c.electionTick * tickMs;
    this.leaseMs = this.leaseRead && tickMs > 0
      ? Math.max(0, c.electionTick * tickMs * (1 - drift) - tickMs)
      : 0;
    this.maxMsgSize = c.maxSizePerMsg;
    this.snapChunk = Math.max(1, c.snapshotChunkBytes ?? 1 << 20);
    this.random = c.random;
    this.logger = c.logger ?? nullLogger;
    this.log = new RaftLog(storage);
    this.trk = new ProgressTracker(Math.max(1, c.maxInflightMsgs), c.maxInflightBytes);

    const hs = { ...storage.initialState().hardState };
    // A bootstrapped store whose initialState() predates the bootstrap write: entry 1 (the
    // bootstrap ConfChange at term 1) is committed by definition.
    if (hs.commit === 0 && storage.firstIndex() === 1 && storage.lastIndex() >= 1) {
      try {
        if (storage.term(1) === 1 && storage.entries(1, 2)[0]?.type === EntryType.ConfChange) {
          hs.commit = 1;
          if (hs.term < 1) hs.term = 1;
        }
      } catch { /* not bootstrapped */ }
    }
    const snapMeta = storage.snapshotMeta();
    // Rebuild the configuration: the snapshot's, plus conf changes up to the applied index.
    // Only committed entries are ever applied, so an applied index above the durable commit
    // index (whose sync may lag: the driver does not sync commit-only hard state changes)
    // proves those entries committed.
    let applied = Math.max(c.applied ?? 0, snapMeta.index);
    if (applied > this.log.lastIndex()) applied = this.log.lastIndex();
    if (hs.commit < applied) hs.commit = applied;
    this.restoreConfig(snapMeta.conf, snapMeta.memberContexts);
    if (applied > snapMeta.index) {
      for (const e of this.log.slice(snapMeta.index + 1, applied + 1)) {
        if (e.type === EntryType.ConfChange) this.applyConfChangeEntry(e);
      }
    }
    if (hs.term > 0 || hs.commit > 0) {
      this.term = hs.term;
      this.vote = hs.vote;
      this.log.commitTo(Math.max(hs.commit, snapMeta.index));
    }
    this.log.committed = Math.max(this.log.committed, snapMeta.index);
    this.log.appliedTo(applied);
    this.becomeFollower(this.term, NONE);
  }

  /** Re-applies a committed conf change at restart; throws {@link ConfChangeApplyError}. */
  private applyConfChangeEntry(e: Entry): void {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch (err) {
      throw new ConfChangeApplyError(e.index, String(err));
    }
    this.applyConfChange(cc, e.index);
  }

  // ---------------------------------------------------------------- state

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  /** Whether this node may campaign: a voter, not a learner. */
  promotable(): boolean {
    return this.trk.isVoter(this.id) && !this.log.unstable.snapshot;
  }

  private send(m: Message): void {
    m.from = this.id;
    if (
      m.type === MessageType.Vote || m.type === MessageType.VoteResp ||
      m.type === MessageType.PreVote || m.type === MessageType.PreVoteResp
    ) {
      // term set explicitly by the caller
    } else if (m.type !== MessageType.ReadIndex) {
      m.term = this.term;
    }
    this.msgs.push(m);
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout +
      Math.floor(this.random() * this.electionTimeout);
    if (this.randomizedElectionTimeout >= 2 * this.electionTimeout) {
      this.randomizedElectionTimeout = 2 * this.electionTimeout - 1;
    }
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.pendingTransferCampaign = false;
    this.handOffAttempts = 0;
    this.handOffTried.clear();
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.log.lastIndex();
    const prs = new Map<NodeId, Progress>();
    for (const [id, old] of this.trk.progress) {
      const pr = new Progress(
        last + 1,
        this.trk.maxInflight,
        this.trk.maxInflightBytes,
        old.isLearner,
      );
      if (id === this.id) pr.match = this.log.persistedLastIndex();
      prs.set(id, pr);
    }
    this.trk.progress = prs;
    this.pendingConfIndex = 0;
    this.readOnly.reset();
    this.pendingReadIndexMessages = [];
    this.needBcast = false;
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  private becomePreCandidate(): void {
    if (this.role === "leader") return;
    // Pre-vote changes nothing durable: neither term nor vote.
    this.trk.resetVotes();
    this.lead = NONE;
    this.role = "pre-candidate";
    this.electionElapsed = 0;
    this.resetRandomizedElectionTimeout();
  }

  private becomeCandidate(): void {
    if (this.role === "leader") return;
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.lead = this.id;
    this.role = "leader";
    const self = this.trk.progress.get(this.id);
    if (self) self.becomeReplicate();
    if (self) self.match = this.log.persistedLastIndex();
    // Conservatively assume unapplied entries may hold a conf change.
    this.pendingConfIndex = this.log.lastIndex();
    // §5.4.2 / §8: append a no-op so entries of earlier terms get committed.
    this.appendEntries([{ term: 0, index: 0, type: EntryType.Normal, data: EMPTY }]);
    this.bcastAppend();
    this.needBcast = false;
    this.logger.info("raft: became leader", { id: this.id, term: this.term });
  }

  // ---------------------------------------------------------------- ticks

  /** Records the driver's monotonic time in ms (ignored when it goes backwards). */
  setNow(ms: number): void {
    if (Number.isFinite(ms) && ms > this.now) this.now = ms;
  }

  tick(): void {
    this.ticks++;
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum && !this.trk.quorumActive(this.id)) {
        this.logger.warn("raft: leader lost quorum, stepping down", {
          id: this.id,
          term: this.term,
        });
        this.becomeFollower(this.term, NONE);
        return;
      }
      if (this.leadTransferee !== NONE) this.abortLeaderTransfer();
      // A removed leader whose hand-off did not complete tries the next recently active voter
      // (it accepts no proposals meanwhile; CheckQuorum still applies), then steps down.
      if (this.isRemovedLeader()) this.handOff();
      if (this.checkQuorum && this.role === "leader") {
        for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastPendingCtx());
      // Re-send stalled snapshot transfers from the acknowledged offset.
      for (const [id, pr] of this.trk.progress) {
        if (id === this.id || pr.state !== "snapshot" || !pr.snap) continue;
        if (!pr.snapProgressed) {
          pr.snapSent = pr.snapAcked;
          this.sendSnapChunks(id, pr);
        }
        pr.snapProgressed = false;
      }
    }
  }

  // ---------------------------------------------------------------- elections

  hup(transfer: boolean): void {
    if (this.role === "leader") return;
    if (!this.promotable()) {
      this.logger.debug("raft: not promotable, not campaigning", { id: this.id });
      return;
    }
    // Do not campaign with unapplied conf changes in the committed log.
    if (this.hasUnappliedConfChanges()) {
      this.logger.debug("raft: unapplied conf changes, not campaigning", { id: this.id });
      return;
    }
    if (this.preVote && !transfer) this.campaign("pre");
    else this.campaign(transfer ? "transfer" : "election");
  }

  /** Called after the driver applied entries: runs a transfer campaign deferred by TimeoutNow. */
  afterApply(): void {
    if (!this.pendingTransferCampaign) return;
    if (this.role !== "follower") {
      this.pendingTransferCampaign = false;
      return;
    }
    if (this.hasUnappliedConfChanges()) return;
    this.pendingTransferCampaign = false;
    this.hup(true);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    try {
      for (const e of this.log.slice(lo, this.log.committed + 1)) {
        if (e.type === EntryType.ConfChange) return true;
      }
    } catch {
      return false;
    }
    return false;
  }

  private campaign(kind: "pre" | "election" | "transfer"): void {
    let term: number;
    let type: MessageType;
    if (kind === "pre") {
      this.becomePreCandidate();
      type = MessageType.PreVote;
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      type = MessageType.Vote;
      term = this.term;
    }
    this.trk.recordVote(this.id, true);
    if (this.poll() === "won") return;
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.trk.voterIds()) {
      if (id === this.id) continue;
      this.send(message({
        type,
        to: id,
        term,
        index: lastIndex,
        logTerm: lastTerm,
        context: kind === "transfer" ? TRANSFER_CONTEXT : EMPTY,
      }));
    }
  }

  private poll(): "won" | "lost" | "pending" {
    const res = this.trk.tallyVotes();
    if (res === "won") {
      if (this.role === "pre-candidate") this.campaign("election");
      else this.becomeLeader();
    } else if (res === "lost") {
      this.becomeFollower(this.term, NONE);
    }
    return res;
  }

  // ---------------------------------------------------------------- step

  /** Processes a message. Invalid or stale messages are ignored. */
  step(m: Message): void {
    try {
      this.stepInner(m);
    } catch (e) {
      this.logger.warn("raft: dropped message that could not be processed", {
        id: this.id,
        type: MessageType[m.type],
        from: m.from,
        err: String(e),
      });
    }
  }

  private stepInner(m: Message): void {
    if (m.term === 0) {
      // local message (or a forwarded ReadIndex)
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = m.context.length > 0 && m.context[0] === TRANSFER_CONTEXT[0];
        // With lease reads, a node that (re)started less than an election timeout ago may have
        // acknowledged a leader's heartbeat before it stopped: it keeps that promise too.
        const inLease = (this.lead !== NONE && this.electionElapsed < this.electionTimeout) ||
          (this.leaseRead && this.ticks < this.electionTimeout);
        if (!force && inLease) {
          // Leader stickiness (thesis §4.2.3): we heard from a live leader recently.
          this.logger.debug("raft: ignoring vote request within leader lease", {
            id: this.id,
            from: m.from,
            term: m.term,
          });
          return;
        }
      }
      if (m.type === MessageType.PreVote) {
        // never change term on a pre-vote
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // the term in a granted pre-vote response is the term we will campaign at
      } else if (
        m.type === MessageType.App || m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snap
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if (m.type === MessageType.App || m.type === MessageType.Heartbeat) {
        // Tell a stale leader about the newer term. Always done: with leader stickiness the
        // votes of a node with a higher term are ignored, so this is how its term gets out.
        this.send(message({ type: MessageType.AppResp, to: m.from }));
      } else if (m.type === MessageType.PreVote) {
        this.send(message({
          type: MessageType.PreVoteResp,
          to: m.from,
          term: this.term,
          reject: true,
        }));
      }
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(false);
        return;
      case MessageType.Vote:
      case MessageType.PreVote: {
        if (m.from === this.id || m.from === NONE) return;
        const canVote = this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.PreVote && m.term > this.term);
        const respType = m.type === MessageType.Vote
          ? MessageType.VoteResp
          : MessageType.PreVoteResp;
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          this.send(message({ type: respType, to: m.from, term: m.term }));
          if (m.type === MessageType.Vote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          // The refusal carries our commit index (and its term) as a hint, see below.
          this.send(message({
            type: respType,
            to: m.from,
            term: this.term,
            reject: true,
            commit: this.log.committed,
            logTerm: this.log.termOrZero(this.log.committed),
          }));
        }
        return;
      }
    }
    if (
      (m.type === MessageType.VoteResp || m.type === MessageType.PreVoteResp) && m.reject &&
      m.commit > this.log.committed && this.log.matchTerm(m.commit, m.logTerm)
    ) {
      // A voter that refused us knows a newer commit index, and the entry we hold at that index
      // has the same term, hence is the same entry (log matching): it is committed for us too.
      // A voter that missed the commit of a configuration change (e.g. the leader removing
      // itself) applies it instead of waiting forever for the vote of a node that left.
      this.log.commitTo(m.commit);
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        break;
      case "candidate":
      case "pre-candidate":
        this.stepCandidate(m);
        break;
      default:
        this.stepFollower(m);
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat(this.readOnly.lastPendingCtx());
        return;
      case MessageType.CheckQuorum:
        if (!this.trk.quorumActive(this.id)) this.becomeFollower(this.term, NONE);
        return;
      case MessageType.ReadIndex:
        this.leaderReadIndex(m);
        return;
      case MessageType.TransferLeader:
        this.leaderTransfer(m.from);
        return;
    }
    const pr = this.trk.progress.get(m.from);
    if (!pr || m.from === this.id) return;
    switch (m.type) {
      case MessageType.AppResp:
        this.handleAppResp(m, pr);
        return;
      case MessageType.HeartbeatResp:
        pr.recentActive = true;
        // The echoed send time of the heartbeat (never one from the future).
        if (m.index > pr.leaseAck && m.index <= this.now) pr.leaseAck = m.index;
        pr.msgAppFlowPaused = false;
        // Appends may have been lost: free one slot of a full window so replication resumes
        // (the follower then rejects the gap and the leader probes back; etcd does the same).
        if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.log.lastIndex() || pr.state === "probe") this.sendAppend(m.from);
        if (m.context.length > 0) this.handleReadAck(m);
        return;
      case MessageType.SnapResp:
        this.handleSnapResp(m, pr);
        return;
      case MessageType.Unreachable:
        if (pr.state === "replicate") pr.becomeProbe();
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === "pre-candidate" ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.App:
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapChunk(m);
        return;
      case myResp:
        this.trk.recordVote(m.from, !m.reject);
        this.poll();
        return;
      case MessageType.TimeoutNow:
        return;
      case MessageType.ReadIndex:
      case MessageType.TransferLeader:
        return; // no leader to forward to
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapChunk(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead === NONE) return;
        this.msgs.push({ ...m, to: this.lead, term: this.term });
        return;
      case MessageType.TimeoutNow:
        this.logger.info("raft: TimeoutNow received, campaigning", { id: this.id, from: m.from });
        if (this.promotable() && this.hasUnappliedConfChanges()) {
          // Campaign as soon as the committed conf changes are applied (see afterApply).
          this.pendingTransferCampaign = true;
          return;
        }
        this.hup(true);
        return;
      case MessageType.ReadIndex:
        if (this.lead === NONE) return;
        this.msgs.push({ ...m, to: this.lead, from: this.id, term: 0 });
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context });
        return;
    }
  }

  // ---------------------------------------------------------------- replication (leader)

  /** Appends entries as leader (assigning term and index). */
  appendEntries(es: Entry[]): void {
    let li = this.log.lastIndex();
    for (const e of es) {
      e.term = this.term;
      e.index = ++li;
    }
    this.log.append(es);
    this.needBcast = true;
  }

  /** Sends an App (or snapshot) to `to` if flow control allows; returns whether it sent. */
  sendAppend(to: NodeId, sendIfEmpty = true): boolean {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number;
    let ents: Entry[];
    try {
      prevTerm = this.log.term(prevIndex);
      let budget = this.maxMsgSize;
      if (pr.state === "replicate" && this.trk.maxInflightBytes > 0) {
        budget = Math.min(budget, Math.max(1, this.trk.maxInflightBytes - pr.inflights.bytes));
      }
      ents = this.log.entriesFrom(pr.next, budget);
    } catch (e) {
      if (e instanceof CompactedError || (e as Error).name === "CompactedError") {
        return this.sendSnapshot(to, pr);
      }
      this.logger.warn("raft: cannot read log for append", { id: this.id, to, err: String(e) });
      return false;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of ents) bytes += entrySize(e);
    this.send(message({
      type: MessageType.App,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    }));
    pr.sentEntries(ents.length, bytes);
    return true;
  }

  /** Sends to every member, as much as flow control allows. */
  bcastAppend(): void {
    for (const id of this.trk.progress.keys()) {
      if (id !== this.id) this.sendAppend(id);
    }
  }

  private bcastAppendNew(): void {
    for (const id of this.trk.progress.keys()) {
      if (id === this.id) continue;
      let n = 0;
      while (this.sendAppend(id, false) && ++n < 1024) { /* fill the window */ }
    }
  }

  private bcastHeartbeat(ctx: Uint8Array | null): void {
    for (const [id, pr] of this.trk.progress) {
      if (id === this.id) continue;
      this.send(message({
        type: MessageType.Heartbeat,
        to: id,
        index: Math.max(0, Math.floor(this.now)), // echoed back: dates the leader lease
        commit: Math.min(pr.match, this.log.committed),
        context: ctx ?? EMPTY,
      }));
    }
  }

  /** Advances the commit index from the quorum's match indexes (own-term entries only). */
  maybeCommit(): boolean {
    const mci = this.trk.committed();
    if (mci <= this.log.committed) return false;
    // §5.4.2: only entries of the current term are committed by counting replicas.
    if (this.log.termOrZero(mci) !== this.term) return false;
    const wasCommittedInTerm = this.committedEntryInCurrentTerm();
    this.log.commitTo(mci);
    if (!wasCommittedInTerm && this.pendingReadIndexMessages.length) {
      const msgs = this.pendingReadIndexMessages;
      this.pendingReadIndexMessages = [];
      for (const rm of msgs) this.leaderReadIndex(rm);
    }
    return true;
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  private handleAppResp(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm);
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const oldPaused = pr.isPaused();
    if (!(pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "probe"))) return;
    if (pr.state === "probe") pr.becomeReplicate();
    else if (
      pr.state === "snapshot" &&
      // Also once the snapshot itself is acknowledged: the leader may have compacted past it
      // meanwhile and must then send a newer one instead of resending the old one forever.
      (pr.match + 1 >= this.log.firstIndex() || pr.match >= pr.pendingSnapshot)
    ) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);

    if (this.maybeCommit()) {
      this.bcastAppend();
    } else if (oldPaused) {
      this.sendAppend(m.from);
    }
    let n = 0;
    while (this.sendAppend(m.from, false) && ++n < 1024) { /* fill the window */ }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(m.from);
    }
  }

  /** Called after the leader's own entries became durable up to `index`. */
  selfPersisted(index: number): void {
    if (this.role !== "leader") return;
    const pr = this.trk.progress.get(this.id);
    if (!pr) return;
    if (pr.maybeUpdate(index) && this.maybeCommit()) this.bcastAppend();
  }

  // ---------------------------------------------------------------- snapshots

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    let snap: Snapshot;
    try {
      snap = this.log.storage.snapshot();
    } catch (e) {
      this.logger.warn("raft: snapshot unavailable", { id: this.id, err: String(e) });
      return false;
    }
    if (snap.meta.index === 0) return false;
    this.logger.info("raft: sending snapshot", {
      id: this.id,
      to,
      index: snap.meta.index,
      bytes: snap.data.length,
    });
    pr.becomeSnapshot(snap);
    this.sendSnapChunks(to, pr);
    return true;
  }

  private sendSnapChunks(to: NodeId, pr: Progress): void {
    const snap = pr.snap;
    if (!snap) return;
    const total = snap.data.length;
    const window = this.snapChunk * SNAP_WINDOW_CHUNKS;
    let first = true;
    while (
      (pr.snapSent < total && pr.snapSent - pr.snapAcked < window) ||
      (first && pr.snapSent === pr.snapAcked && pr.snapSent >= total)
    ) {
      first = false;
      const off = pr.snapSent;
      const end = Math.min(total, off + this.snapChunk);
      this.send(message({
        type: MessageType.Snap,
        to,
        snapshot: {
          meta: snap.meta,
          offset: off,
          total,
          data: snap.data.subarray(off, end),
          done: end >= total,
        },
      }));
      pr.snapSent = end;
      if (end >= total) break;
    }
  }

  private handleSnapResp(m: Message, pr: Progress): void {
    if (pr.state !== "snapshot" || !pr.snap || m.commit !== pr.snap.meta.index) return;
    pr.recentActive = true;
    pr.snapProgressed = true;
    if (m.reject) {
      pr.snapAcked = Math.min(m.index, pr.snap.data.length);
      pr.snapSent = pr.snapAcked;
    } else if (m.index > pr.snapAcked) {
      pr.snapAcked = Math.min(m.index, pr.snap.data.length);
      if (pr.snapSent < pr.snapAcked) pr.snapSent = pr.snapAcked;
    } else {
      return;
    }
    this.sendSnapChunks(m.from, pr);
  }

  private handleSnapChunk(m: Message): void {
    const c = m.snapshot;
    if (!c) return;
    const meta = c.meta;
    const resp = (index: number, reject: boolean) =>
      this.send(
        message({ type: MessageType.SnapResp, to: m.from, index, reject, commit: meta.index }),
      );
    if (meta.index <= this.log.committed) {
      this.snapRecv = null;
      this.send(message({ type: MessageType.AppResp, to: m.from, index: this.log.committed }));
      return;
    }
    let r = this.snapRecv;
    if (
      !r || r.from !== m.from || r.leaderTerm !== m.term || r.index !== meta.index ||
      r.term !== meta.term || r.total !== c.total
    ) {
      if (c.offset !== 0) {
        resp(0, true);
        return;
      }
      r = this.snapRecv = {
        from: m.from,
        leaderTerm: m.term,
        index: meta.index,
        term: meta.term,
        total: c.total,
        received: 0,
        parts: [],
      };
    }
    if (c.offset !== r.received) {
      if (c.offset < r.received) resp(r.received, false);
      else resp(r.received, true);
      return;
    }
    if (c.data.length > 0) {
      r.parts.push(c.data.slice());
      r.received += c.data.length;
    }
    if (r.received < r.total && !c.done) {
      resp(r.received, false);
      return;
    }
    this.snapRecv = null;
    if (r.received !== r.total) {
      resp(0, true);
      return;
    }
    const data = new Uint8Array(r.total);
    let o = 0;
    for (const p of r.parts) {
      data.set(p, o);
      o += p.length;
    }
    const snap: Snapshot = { meta, data };
    if (this.restore(snap)) {
      this.logger.info("raft: restored snapshot", { id: this.id, index: meta.index });
      this.send(message({ type: MessageType.AppResp, to: m.from, index: this.log.lastIndex() }));
    } else {
      this.send(message({ type: MessageType.AppResp, to: m.from, index: this.log.committed }));
    }
  }

  /** Installs a received snapshot (§7); false when it is stale or already matched. */
  restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.role !== "follower") return false;
    const cs = s.meta.conf;
    const inConf = cs.voters.includes(this.id) || cs.votersOutgoing.includes(this.id) ||
      cs.learners.includes(this.id) || cs.learnersNext.includes(this.id);
    // A joining node (not in its own configuration yet: brand-new, or holding only snapshots
    // that predate its addition) accepts a snapshot taken before the change that added it: the
    // leader may have nothing newer, and the entries that follow add the node.
    const joining = !this.trk.progress.has(this.id);
    if (!inConf && !joining) {
      this.logger.warn("raft: snapshot does not include this node, ignoring", { id: this.id });
      return false;
    }
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // §7: the log already holds the snapshot's last entry: keep the entries that follow.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.restoreConfig(cs, s.meta.memberContexts);
    return true;
  }

  /** The member contexts as `SnapshotMeta.memberContexts` carries them (sorted by id). */
  memberContextList(): MemberContext[] {
    return [...this.memberContexts].sort((a, b) => a[0] - b[0]).map(([id, context]) => ({
      id,
      context,
    }));
  }

  private restoreConfig(cs: ConfState, contexts: MemberContext[] = []): void {
    const cfg = fromConfState(cs);
    const last = this.log.lastIndex();
    const prs = new Map<NodeId, Progress>();
    const add = (id: NodeId, learner: boolean) => {
      const pr = new Progress(last + 1, this.trk.maxInflight, this.trk.maxInflightBytes, learner);
      if (id === this.id) pr.match = last;
      prs.set(id, pr);
    };
    for (const id of cfg.voters) add(id, false);
    for (const id of cfg.outgoing) if (!prs.has(id)) add(id, false);
    for (const id of cfg.learners) if (!prs.has(id)) add(id, true);
    for (const id of cfg.learnersNext) if (!prs.has(id)) add(id, true);
    this.trk.config = cfg;
    this.trk.progress = prs;
    this.isLearner = !this.trk.isVoter(this.id) && prs.has(this.id);
    this.memberContexts = new Map();
    for (const c of contexts) {
      if (prs.has(c.id) && c.context.length > 0) this.memberContexts.set(c.id, c.context.slice());
    }
  }

  // ---------------------------------------------------------------- follower handlers

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(message({ type: MessageType.AppResp, to: m.from, index: this.log.committed }));
      return;
    }
    const lastnewi = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastnewi >= 0) {
      this.send(message({ type: MessageType.AppResp, to: m.from, index: lastnewi }));
      return;
    }
    // §5.3 with the fast backtracking optimization: hint at (index, term) to retry from.
    let hintIndex = Math.min(m.index, this.log.lastIndex());
    hintIndex = this.log.findConflictByTerm(hintIndex, m.logTerm);
    const hintTerm = this.log.termOrZero(hintIndex);
    this.send(message({
      type: MessageType.AppResp,
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hintIndex,
      logTerm: hintTerm,
    }));
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(m.commit);
    this.send(
      message({ type: MessageType.HeartbeatResp, to: m.from, index: m.index, context: m.context }),
    );
  }

  // ---------------------------------------------------------------- reads

  private leaderReadIndex(m: Message): void {
    const voters = this.trk.voterIds();
    const local = m.from === this.id || m.from === NONE;
    if (!this.committedEntryInCurrentTerm()) {
      // Thesis §6.4: the leader must first commit an entry of its term, also as the only voter:
      // its commit index may lag what it acknowledged before a restart (commit-only hard state
      // changes are not synced at once).
      this.pendingReadIndexMessages.push(m);
      return;
    }
    if (voters.length === 1 && voters[0] === this.id) {
      this.answerRead(m, this.log.committed);
      return;
    }
    if (this.leaseRead && this.leaseValid()) {
      this.answerRead(m, this.log.committed);
      return;
    }
    if (!local && !this.trk.progress.has(m.from)) return;
    this.readOnly.enqueue(m);
  }

  /**
   * Whether the leader lease still holds at the driver's time `now`: a quorum acknowledged a
   * heartbeat sent at `s` (the time it carried, a lower bound of its send time), and each of
   * them, having reset its election timer when the heartbeat arrived (at or after `s`), votes
   * for no other candidate for `electionTick` ticks of its own (leader stickiness). Its first
   * tick may come at once, and its clock may run faster by up to the drift bound, so no other
   * leader can exist before `s + electionTick × tickMs × (1 − drift) − tickMs`. Dated by time,
   * not by ticks: an event loop that stalls drops ticks, which would stretch a tick-dated lease.
   */
  private leaseValid(): boolean {
    if (this.leaseMs <= 0 || this.now < 0) return false;
    // A transfer target campaigns with a forced vote that overrides leader stickiness, so no
    // lease holds from the moment a transfer starts until well after it ended.
    if (this.leadTransferee !== NONE) return false;
    if (this.now < this.lastTransferAt + 2 * this.electionMs) return false;
    const s = jointCommitted(this.trk.config.voters, this.trk.config.outgoing, (id) => {
      if (id === this.id) return this.now;
      return this.trk.progress.get(id)?.leaseAck ?? -1;
    });
    return s >= 0 && this.now < s + this.leaseMs;
  }

  /** Starts one heartbeat round for every read queued since the last round. */
  flushReads(): void {
    if (this.role !== "leader" || this.readOnly.queued.length === 0) return;
    const round = this.readOnly.startRound(this.log.committed);
    if (!round) return;
    round.acks.add(this.id);
    const ctx = this.readOnly.lastPendingCtx()!;
    this.bcastHeartbeat(ctx);
  }

  private handleReadAck(m: Message): void {
    const round = this.readOnly.recvAck(m.from, m.context);
    if (!round) return;
    const votes = new Map<NodeId, boolean>();
    for (const id of round.acks) votes.set(id, true);
    if (jointVote(this.trk.config.voters, this.trk.config.outgoing, votes) !== "won") return;
    for (const r of this.readOnly.advance(round.seq)) {
      for (const req of r.reqs) this.answerRead(req, r.index);
    }
  }

  private answerRead(m: Message, index: number): void {
    if (m.from === this.id || m.from === NONE) {
      this.readStates.push({ index, context: m.context });
    } else {
      this.send(message({
        type: MessageType.ReadIndexResp,
        to: m.from,
        index,
        context: m.context,
      }));
    }
  }

  // ---------------------------------------------------------------- proposals & membership

  /** Appends a proposal as leader; throws when not leader or during a transfer. */
  propose(data: Uint8Array, type: EntryType = EntryType.Normal): { index: number; term: number } {
    if (this.role !== "leader") throw new NotLeaderError(this.lead);
    if (this.leadTransferee !== NONE) {
      throw new ProposalDroppedError("leadership transfer in progress");
    }
    if (!this.trk.progress.has(this.id)) throw new NotLeaderError(NONE);
    const e: Entry = { term: 0, index: 0, type, data };
    this.appendEntries([e]);
    return { index: e.index, term: e.term };
  }

  /** Proposes a membership change; one at a time (§6, thesis §4.3). */
  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    if (this.role !== "leader") throw new NotLeaderError(this.lead);
    if (this.leadTransferee !== NONE) {
      throw new ProposalDroppedError("leadership transfer in progress");
    }
    const joint = this.trk.isJoint();
    const leave = cc.changes.length === 0;
    if (this.pendingConfIndex > this.log.applied) {
      throw new ConfChangeInProgressError("a previous change is not applied yet");
    }
    if (joint && !leave) throw new ConfChangeInProgressError("must leave the joint config first");
    if (!joint && leave) throw new InvalidConfChangeError("not in a joint configuration");
    // Validate without side effects.
    applyChange(this.trk.config, this.trk.progress, cc, this.changeParams());
    const r = this.propose(encodeConfChange(cc), EntryType.ConfChange);
    this.pendingConfIndex = r.index;
    return r;
  }

  private changeParams() {
    return {
      lastIndex: this.log.lastIndex(),
      maxInflight: this.trk.maxInflight,
      maxInflightBytes: this.trk.maxInflightBytes,
    };
  }

  /**
   * Applies a committed membership change (the entry at `index`); returns the new
   * configuration. A committed change that does not apply throws {@link ConfChangeApplyError}
   * and changes nothing: the driver must halt (skipping it would let configurations diverge).
   */
  applyConfChange(cc: ConfChange, index = 0): ConfState {
    let res;
    try {
      res = applyChange(this.trk.config, this.trk.progress, cc, this.changeParams());
    } catch (e) {
      throw new ConfChangeApplyError(index, (e as Error).message ?? String(e));
    }
    // A change that adds (or promotes) a node with a context records it for that node; the
    // contexts of nodes no longer in the configuration go.
    if (cc.context.length > 0) {
      let copy: Uint8Array | undefined;
      for (const ch of cc.changes) {
        if (ch.type === ConfChangeType.AddNode || ch.type === ConfChangeType.AddLearner) {
          this.memberContexts.set(ch.nodeId, copy ??= cc.context.slice());
        }
      }
    }
    for (const id of this.memberContexts.keys()) {
      if (!res.progress.has(id)) this.memberContexts.delete(id);
    }
    return this.switchToConfig(res.config, res.progress);
  }

  private switchToConfig(cfg: TrackerConfig, prs: Map<NodeId, Progress>): ConfState {
    this.trk.config = cfg;
    this.trk.progress = prs;
    const self = prs.get(this.id);
    this.isLearner = !!self && self.isLearner;
    const cs = toConfState(cfg);
    if ((!self || this.isLearner) && (this.role === "candidate" || this.role === "pre-candidate")) {
      // Removed (or demoted) while campaigning: votes still arriving for the campaign would
      // otherwise make a non-voter leader (sim seed 309055).
      this.becomeFollower(this.term, NONE);
      return cs;
    }
    if ((!self || this.isLearner) && this.role === "leader") {
      // Removed (or demoted) by a committed C(new): hand leadership to the most up-to-date
      // voter, then step down. Stepping down at once could deadlock the cluster: the remaining
      // voters may not yet know that C(new) is committed (they apply configurations when
      // committed) and still need this node's vote, which it refuses when it holds entries
      // they lack. The transfer first replicates those entries and the commit index.
      this.logger.info("raft: leader removed from configuration, handing off", { id: this.id });
      this.handOff();
      return cs;
    }
    if (this.role !== "leader" || cs.voters.length === 0) return cs;
    if (this.maybeCommit()) this.bcastAppend();
    else {
      for (const id of prs.keys()) if (id !== this.id) this.sendAppend(id, false);
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
    return cs;
  }

  /** Leader: propose leaving a joint configuration once the joint entry is applied. */
  maybeAutoLeave(): void {
    if (
      this.role === "leader" && this.trk.isJoint() && this.leadTransferee === NONE &&
      this.log.applied >= this.pendingConfIndex
    ) {
      try {
        this.proposeConfChange({ changes: [], context: EMPTY });
        this.logger.info("raft: proposing to leave the joint configuration", { id: this.id });
      } catch (e) {
        this.logger.debug("raft: auto-leave not possible yet", { err: String(e) });
      }
    }
  }

  // ---------------------------------------------------------------- leadership transfer

  private leaderTransfer(to: NodeId): void {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isLearner || !this.trk.isVoter(to)) return;
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === to) return;
      this.abortLeaderTransfer();
    }
    if (to === this.id) return;
    this.logger.info("raft: starting leadership transfer", { id: this.id, to });
    this.electionElapsed = 0;
    this.leadTransferee = to;
    this.lastTransferAt = this.now;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
  }

  /** A leader that is no longer a voter of its (committed) configuration. */
  isRemovedLeader(): boolean {
    if (this.role !== "leader") return false;
    const self = this.trk.progress.get(this.id);
    return !self || self.isLearner;
  }

  /**
   * Removed leader: hands leadership off. Candidates are the voters not tried yet in this term,
   * those heard from in the current CheckQuorum window first (all untried voters if none of them
   * was), most up to date first (ties: lowest id); each attempt, one per election timeout, takes
   * the best candidate, so a target that failed (dead, cut off, unwilling) is never tried again,
   * even if it was heard from earlier in the window. After {@link HANDOFF_ATTEMPTS} failed
   * attempts, or when no voter is left to try, the node steps down: its heartbeats stop holding
   * back the remaining voters, which then elect a leader.
   */
  private handOff(): void {
    const voters: { id: NodeId; pr: Progress }[] = [];
    for (const id of this.trk.voterIds()) {
      const pr = this.trk.progress.get(id);
      if (id !== this.id && pr && !this.handOffTried.has(id)) voters.push({ id, pr });
    }
    const active = voters.filter((v) => v.pr.recentActive);
    const cands = (active.length > 0 ? active : voters)
      .sort((a, b) => b.pr.match - a.pr.match || a.id - b.id);
    if (cands.length === 0 || this.handOffAttempts >= HANDOFF_ATTEMPTS) {
      this.logger.info("raft: removed leader stepping down", {
        id: this.id,
        attempts: this.handOffAttempts,
        tried: [...this.handOffTried],
      });
      this.becomeFollower(this.term, NONE);
      return;
    }
    const to = cands[0].id;
    this.handOffAttempts++;
    this.handOffTried.add(to);
    this.leaderTransfer(to);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(message({ type: MessageType.TimeoutNow, to }));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }
}
