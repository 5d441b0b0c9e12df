/**
 * RaftNode: the driver that runs a {@link RawNode} against real storage, a transport and a
 * state machine. It owns the only timer of the Raft layer (the tick) and the processing loop:
 *
 * each tick, received message or request schedules one pass; a pass takes a Ready, sends its
 * `messages` at once, persists entries / hard state / snapshot with ONE `LogStore.sync()`
 * (group commit: every proposal made since the previous pass shares it), sends
 * `persistedMessages`, applies committed entries (resolving waiting proposals by index and
 * term), serves reads, advances, and takes a snapshot every `snapshotThreshold` applied entries
 * (or `snapshotBytes` applied bytes, once above the last snapshot's size).
 *
 * `stop()` closes the transport, the log store and the state machine (the node owns them).
 *
 * @module
 */
import { type Clock, systemClock, type TimerHandle } from "./clock.ts";
import { NotLeaderError, ProposalDroppedError, StoppedError, TimeoutError } from "./errors.ts";
import { type Logger, nullLogger } from "./logger.ts";
import type { RaftConfig } from "./raft.ts";
import { type RaftStatus, RawNode, type Ready } from "./raw_node.ts";
import type { ApplyCommand, StateMachine } from "./state_machine.ts";
import type { LogStore } from "./storage.ts";
import type { Transport } from "./transport.ts";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type MemberContext,
  type Message,
  MessageType,
  type NodeId,
  NONE,
  type SnapshotMeta,
} from "./types.ts";

/** Options of {@link RaftNode.start}. */
export interface RaftNodeOptions {
  /** Raft configuration (the random source is `random`). */
  config: Omit<RaftConfig, "random" | "applied" | "logger">;
  /** Milliseconds per tick. */
  tickMs: number;
  /** The durable log (owned: closed by stop()). */
  log: LogStore;
  /** The state machine (owned: closed by stop()). */
  sm: StateMachine;
  /** The transport (owned: started here, closed by stop()). */
  transport: Transport;
  /** Initial voters; used only when the log is empty (a brand-new cluster member). */
  bootstrapVoters?: NodeId[];
  /** Applied entries since the last snapshot before a new snapshot is taken. */
  snapshotThreshold: number;
  /**
   * Applied entry bytes since the last snapshot that also trigger one, once they exceed the last
   * snapshot's size too (0 or absent: entries only). With many commands per entry the entry
   * count says little about the log's size; this bounds the log on disk to about the state's
   * size (at least this many bytes), and a snapshot never serializes more than the log grew.
   */
  snapshotBytes?: number;
  /** Logger (default: discard). */
  logger?: Logger;
  /** Called after a ConfChange entry is applied, with the resulting configuration. */
  onConfChange?: (cc: ConfChange, conf: ConfState, index: number) => void;
  /** Called after a snapshot received from the leader was installed (its `conf` and
   * `memberContexts` are then the node's configuration). */
  onSnapshotRestored?: (meta: SnapshotMeta) => void;
  /** The clock and timers of the driver (default {@link systemClock}; the simulator passes a
   * virtual one). */
  clock?: Clock;
  /** The random source of the core's randomized election timeouts (default Math.random). */
  random?: () => number;
  /** Groups proposals made with `batch: true` that arrive together into one entry (none: one
   * entry per proposal). */
  batcher?: ProposalBatcher;
}

/**
 * Puts many proposals in one entry: those made (with `batch: true`) while the driver's pass is
 * busy, or in one event-loop turn, are proposed together at the start of the next pass, so the
 * per-entry costs (log record, replication, apply) are paid once per batch on every node.
 */
export interface ProposalBatcher {
  /** The data of one entry carrying `parts` (two or more), in order. The state machine's result
   * for such an entry must be an array of one result per part, in the same order. */
  encode(parts: Uint8Array[]): Uint8Array;
  /** Most bytes of parts in one entry; a larger proposal gets an entry of its own. */
  maxBytes: number;
  /** Most parts in one entry. */
  maxParts: number;
}

/** Per-request options. */
export interface RequestOptions {
  /** Deadline in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** The proposal may share an entry with others ({@link RaftNodeOptions.batcher}). */
  batch?: boolean;
}

/** Extra fields of {@link RaftNode.status}. */
export interface NodeStatus extends RaftStatus {
  /** Index of the latest local snapshot. */
  snapshotIndex: number;
  /** Entries held in the log (after the snapshot). */
  logSize: number;
}

const DEFAULT_TIMEOUT = 10_000;

interface ProposalWaiter {
  term: number;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** When it times out (clock ms): swept by the tick, no timer per request. */
  deadline: number;
  what: string;
  timeoutMs: number;
}

/** A proposal waiting for the next pass to put it in a batch entry. */
interface QueuedProposal {
  data: Uint8Array;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timeoutMs: number;
  /** When it times out (from the propose call, not from the pass that proposes it). */
  deadline: number;
}

interface ReadWaiter {
  resolve: () => void;
  reject: (e: Error) => void;
  /** When it times out (clock ms): swept by the tick, no timer per request. */
  deadline: number;
  timeoutMs: number;
  done: boolean;
}

interface ReadBatch {
  ctx: Uint8Array;
  key: string;
  waiters: ReadWaiter[];
  /** Read index once answered, else -1. */
  index: number;
  issuedAtTick: number;
}

interface CondWaiter {
  check: () => boolean;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: TimerHandle;
}

/** The map key of a read context (hex). */
function readKey(ctx: Uint8Array): string {
  let s = "";
  for (const b of ctx) s += b.toString(16).padStart(2, "0");
  return s;
}

/** A running Raft member. */
export class RaftNode {
  /** The underlying deterministic node (for tests and tools). */
  readonly rawNode: RawNode;
  private readonly log: LogStore;
  private readonly sm: StateMachine;
  private readonly transport: Transport;
  private readonly logger: Logger;
  private readonly opts: RaftNodeOptions;
  private interval: TimerHandle | undefined;
  private readonly clock: Clock;
  private scheduled = false;
  /** The snapshot being taken in the background, if any. */
  private snapshotRun: Promise<void> | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private ticks = 0;
  private proposals = new Map<number, ProposalWaiter>();
  /** Batchable proposals not yet in the log (proposed at the start of the next pass). */
  private queued: QueuedProposal[] = [];
  /** No proposal times out before this (a lower bound: resolved proposals are not removed). */
  private proposalDeadline = Infinity;
  /** Every read not yet answered or timed out, for the deadline sweep. */
  private pendingReads = new Set<ReadWaiter>();
  /** No read times out before this (a lower bound). */
  private readDeadline = Infinity;
  private newReads: ReadWaiter[] = [];
  private readBatches = new Map<string, ReadBatch>();
  private answeredReads: ReadBatch[] = [];
  private readSeq = 0;
  /**
   * Random per-process prefix of read contexts (as etcd-raft's random request ids): a
   * ReadIndexResp still in flight for a read of a previous incarnation of this node never
   * answers a read of this one.
   */
  private readonly readNonce = crypto.getRandomValues(new Uint8Array(8));
  private conds: CondWaiter[] = [];
  private leaderCbs: ((lead: NodeId, term: number) => void)[] = [];
  private fatalCbs: ((err: Error) => void)[] = [];
  private lead: NodeId = NONE;
  private applied: number;
  private snapshotIndex: number;
  /** Bytes of entries applied since the last snapshot (counted from this process's start). */
  private appliedBytes = 0;
  /** The size of the last snapshot taken or installed by this process (0: none yet). */
  private lastSnapshotBytes = 0;
  private fatal: Error | null = null;
  private syncedTerm: number;
  private syncedVote: NodeId;

  private constructor(opts: RaftNodeOptions, rn: RawNode, applied: number) {
    this.opts = opts;
    this.rawNode = rn;
    this.log = opts.log;
    this.sm = opts.sm;
    this.transport = opts.transport;
    this.logger = opts.logger ?? nullLogger;
    this.clock = opts.clock ?? systemClock;
    this.applied = applied;
    this.snapshotIndex = opts.log.snapshotMeta().index;
    this.syncedTerm = rn.raft.term;
    this.syncedVote = rn.raft.vote;
  }

  /** Opens the node: bootstraps an empty log, catches the state machine up, starts ticking. */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    const { log, sm } = opts;
    const empty = log.lastIndex() === 0 && log.snapshotMeta().index === 0 &&
      log.initialState().hardState.term === 0;
    if (empty && opts.bootstrapVoters && opts.bootstrapVoters.length > 0) {
      RawNode.bootstrap(log, opts.bootstrapVoters);
      await log.sync();
    }
    const meta = log.snapshotMeta();
    let applied = sm.appliedIndex();
    if (applied < meta.index) {
      await sm.restore(log.snapshot().data, meta.index);
      applied = meta.index;
    }
    const rn = new RawNode({
      ...opts.config,
      tickMs: opts.config.tickMs ?? opts.tickMs,
      random: opts.random ?? Math.random,
      applied,
      logger: opts.logger,
    }, log);
    const node = new RaftNode(opts, rn, Math.max(applied, meta.index));
    await opts.transport.start((m) => node.onMessage(m));
    node.interval = node.clock.setInterval(() => node.onTick(), opts.tickMs);
    node.schedule();
    return node;
  }

  // ---------------------------------------------------------------- public API

  /** Proposes a command; resolves with the state machine's result once it is applied. */
  propose(data: Uint8Array, opts?: RequestOptions): Promise<unknown> {
    if (this.stopped || this.fatal) return Promise.reject(this.fatal ?? new StoppedError());
    const timeoutMs = opts?.timeoutMs ?? DEFAULT_TIMEOUT;
    const b = this.opts.batcher;
    const raft = this.rawNode.raft;
    // Queued only where the core would take it now (else the refusal below comes at once).
    if (
      opts?.batch && b && data.length <= b.maxBytes && raft.role === "leader" &&
      raft.leadTransferee === NONE
    ) {
      return new Promise((resolve, reject) => {
        const deadline = this.clock.now() + timeoutMs;
        if (deadline < this.proposalDeadline) this.proposalDeadline = deadline;
        this.queued.push({ data, resolve, reject, timeoutMs, deadline });
        this.schedule();
      });
    }
    // Proposals keep their order: those queued before this one enter the log first.
    this.flushQueued();
    let r: { index: number; term: number };
    try {
      r = this.rawNode.propose(data);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = this.waitProposal(r.index, r.term, timeoutMs, "propose");
    this.schedule();
    return p;
  }

  /** Proposes the queued proposals, as few entries as the batcher's bounds allow. */
  private flushQueued(): void {
    const q = this.queued;
    if (q.length === 0) return;
    this.queued = [];
    const b = this.opts.batcher!;
    for (let i = 0; i < q.length;) {
      let j = i + 1;
      let bytes = q[i].data.length;
      while (j < q.length && j - i < b.maxParts && bytes + q[j].data.length <= b.maxBytes) {
        bytes += q[j].data.length;
        j++;
      }
      this.proposeGroup(j - i === q.length ? q : q.slice(i, j));
      i = j;
    }
  }

  /** Proposes `g` as one entry (a batch entry when it has more than one proposal). */
  private proposeGroup(g: QueuedProposal[]): void {
    let deadline = g[0].deadline;
    for (const p of g) if (p.deadline < deadline) deadline = p.deadline;
    const timeoutMs = Math.max(0, deadline - this.clock.now());
    let r: { index: number; term: number };
    try {
      r = this.rawNode.propose(
        g.length === 1 ? g[0].data : this.opts.batcher!.encode(g.map((p) => p.data)),
      );
    } catch (e) {
      for (const p of g) p.reject(e as Error);
      return;
    }
    if (g.length === 1) {
      this.addWaiter(r.index, r.term, g[0].resolve, g[0].reject, timeoutMs, "propose");
      return;
    }
    this.addWaiter(
      r.index,
      r.term,
      (v) => {
        if (Array.isArray(v) && v.length === g.length) {
          for (let k = 0; k < g.length; k++) g[k].resolve(v[k]);
        } else for (const p of g) p.resolve(v); // refused as a whole (an unreadable entry)
      },
      (e) => {
        for (const p of g) p.reject(e);
      },
      timeoutMs,
      "propose",
    );
  }

  /** Proposes a membership change; resolves once it is applied. */
  async proposeConfChange(cc: ConfChange, opts?: RequestOptions): Promise<void> {
    if (this.stopped || this.fatal) throw this.fatal ?? new StoppedError();
    const r = this.rawNode.proposeConfChange(cc);
    const p = this.waitProposal(r.index, r.term, opts?.timeoutMs ?? DEFAULT_TIMEOUT, "conf change");
    this.schedule();
    await p;
  }

  /**
   * Resolves when a linearizable read may be served from the local state machine. Reads
   * waiting at the same moment share one ReadIndex request (one heartbeat round).
   */
  readIndex(opts?: RequestOptions): Promise<void> {
    if (this.stopped || this.fatal) return Promise.reject(this.fatal ?? new StoppedError());
    const timeoutMs = opts?.timeoutMs ?? DEFAULT_TIMEOUT;
    return new Promise<void>((resolve, reject) => {
      const deadline = this.clock.now() + timeoutMs;
      const w: ReadWaiter = { resolve, reject, done: false, deadline, timeoutMs };
      this.pendingReads.add(w);
      if (deadline < this.readDeadline) this.readDeadline = deadline;
      this.newReads.push(w);
      this.schedule();
    });
  }

  /**
   * Adds a member: first as a learner, waits until it has caught up with the leader's log, then
   * promotes it to voter (each step through joint consensus). Must be called on the leader.
   */
  async addMember(id: NodeId, context: Uint8Array, opts?: RequestOptions): Promise<void> {
    const timeoutMs = opts?.timeoutMs ?? 30_000;
    const deadline = this.clock.now() + timeoutMs;
    const left = () => Math.max(1, deadline - this.clock.now());
    await this.waitConfIdle(left());
    const conf = this.rawNode.status().conf;
    if (!conf.voters.includes(id) && !conf.learners.includes(id)) {
      await this.proposeConfChange(
        { changes: [{ type: ConfChangeType.AddLearner, nodeId: id }], context },
        { timeoutMs: left() },
      );
      await this.waitConfIdle(left());
    }
    // Caught up: the learner's match is close to the leader's last index.
    await this.waitFor(
      () => {
        const st = this.rawNode.status();
        if (st.role !== "leader") throw new NotLeaderError(st.lead);
        const pr = st.progress?.get(id);
        return !!pr && pr.state === "replicate" && pr.match + 16 >= st.lastIndex;
      },
      left(),
      "addMember catch-up",
    );
    if (!this.rawNode.status().conf.voters.includes(id)) {
      await this.proposeConfChange(
        { changes: [{ type: ConfChangeType.AddNode, nodeId: id }], context },
        { timeoutMs: left() },
      );
    }
    await this.waitConfIdle(left());
  }

  /** Removes a member (voter or learner) through joint consensus. Must be called on the leader. */
  async removeMember(id: NodeId, opts?: RequestOptions): Promise<void> {
    const timeoutMs = opts?.timeoutMs ?? 30_000;
    const deadline = this.clock.now() + timeoutMs;
    const left = () => Math.max(1, deadline - this.clock.now());
    await this.waitConfIdle(left());
    await this.proposeConfChange(
      { changes: [{ type: ConfChangeType.RemoveNode, nodeId: id }], context: new Uint8Array(0) },
      { timeoutMs: left() },
    );
    // Done once the change left the joint configuration, or (removing this leader itself) once
    // leadership was handed off.
    await this.waitFor(
      () => {
        const r = this.rawNode.raft;
        if (r.role !== "leader") {
          if (id === r.id || !r.trk.isVoter(id)) return true;
          throw new NotLeaderError(r.lead);
        }
        return !r.trk.isJoint() && r.pendingConfIndex <= r.log.applied;
      },
      left(),
      "removeMember",
    );
  }

  /** Transfers leadership to `id`; resolves once `id` is the known leader. */
  transferLeader(id: NodeId, opts?: RequestOptions): Promise<void> {
    if (this.stopped || this.fatal) return Promise.reject(this.fatal ?? new StoppedError());
    // Writes accepted before the transfer enter the log before it refuses proposals.
    this.flushQueued();
    this.rawNode.transferLeader(id);
    this.schedule();
    return this.waitFor(
      () => this.rawNode.raft.lead === id,
      opts?.timeoutMs ?? DEFAULT_TIMEOUT,
      "transferLeader",
    );
  }

  /** Starts an election at once. */
  campaign(): void {
    if (this.stopped || this.fatal) return;
    this.rawNode.campaign();
    this.schedule();
  }

  /**
   * Per member of the current configuration, the context of the conf change that added it
   * ({@link RawNode.memberContexts}): with {@link status}'s `conf`, what a node that installed
   * a snapshot or restarted knows of the members it did not see being added.
   */
  memberContexts(): MemberContext[] {
    return this.rawNode.memberContexts();
  }

  /** The node's state. */
  status(): NodeStatus {
    const st = this.rawNode.status();
    return {
      ...st,
      applied: this.applied,
      snapshotIndex: this.snapshotIndex,
      logSize: st.lastIndex - st.firstIndex + 1,
    };
  }

  /**
   * The fatal error that halted the node (a failed fsync, a committed conf change that does not
   * apply, ...), or null while it runs. A halted node processes nothing more; its process should
   * exit so that a supervisor restarts it from its durable state.
   */
  get failure(): Error | null {
    return this.fatal;
  }

  /**
   * Halts the node on a fatal error found outside the driver (for instance the state machine's
   * storage engine failing in the background), exactly as on a failed fsync: see
   * {@link failure} and {@link onFatal}. Does nothing if the node already halted.
   */
  fail(err: Error): void {
    this.halt(err);
  }

  /** Registers a callback called once when the node halts on a fatal error. */
  onFatal(cb: (err: Error) => void): void {
    this.fatalCbs.push(cb);
  }

  /** Registers a callback for leader changes (called with the new leader, 0 when unknown). */
  onLeaderChange(cb: (lead: NodeId, term: number) => void): void {
    this.leaderCbs.push(cb);
  }

  /** Stops ticking, waits for the current pass, fails waiting requests, closes what it owns. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.interval !== undefined) this.clock.clearInterval(this.interval);
    if (this.running) await this.running.catch(() => {});
    if (this.snapshotRun) await this.snapshotRun;
    this.failAll(new StoppedError());
    await this.transport.close();
    // Persist what was recorded without a sync (commit-only hard state changes).
    if (!this.fatal) await this.log.sync().catch(() => {});
    await this.log.close();
    await this.sm.close();
  }

  /** Rejects every waiting request with `err`. */
  private failAll(err: Error): void {
    for (const p of this.queued.splice(0)) p.reject(err);
    for (const w of this.proposals.values()) w.reject(err);
    this.proposals.clear();
    this.pendingReads.clear();
    const reads = [...this.newReads];
    for (const b of this.readBatches.values()) reads.push(...b.waiters);
    for (const b of this.answeredReads) reads.push(...b.waiters);
    for (const w of reads) {
      if (!w.done) {
        w.done = true;
        w.reject(err);
      }
    }
    this.newReads = [];
    this.readBatches.clear();
    this.answeredReads = [];
    for (const c of this.conds) {
      this.clock.clearTimeout(c.timer);
      c.reject(err);
    }
    this.conds = [];
  }

  // ---------------------------------------------------------------- waiting helpers

  private waitProposal(index: number, term: number, timeoutMs: number, what: string) {
    return new Promise<unknown>((resolve, reject) => {
      this.addWaiter(index, term, resolve, reject, timeoutMs, what);
    });
  }

  private addWaiter(
    index: number,
    term: number,
    resolve: (v: unknown) => void,
    reject: (e: Error) => void,
    timeoutMs: number,
    what: string,
  ): void {
    const deadline = this.clock.now() + timeoutMs;
    if (deadline < this.proposalDeadline) this.proposalDeadline = deadline;
    const prev = this.proposals.get(index);
    if (prev) prev.reject(new ProposalDroppedError("entry overwritten by another term"));
    this.proposals.set(index, { term, resolve, reject, deadline, what, timeoutMs });
  }

  /**
   * Rejects the proposals and reads whose deadline passed (called every tick). The requests
   * carry deadlines instead of one timer each; the whole set is scanned only when the earliest
   * deadline seen has passed, so a request costs no timer and the sweep almost nothing.
   */
  private expireRequests(now: number): void {
    if (now >= this.proposalDeadline) {
      let next = Infinity;
      if (this.queued.length > 0) {
        const keep: QueuedProposal[] = [];
        for (const p of this.queued) {
          if (p.deadline <= now) p.reject(new TimeoutError("propose", p.timeoutMs));
          else {
            keep.push(p);
            if (p.deadline < next) next = p.deadline;
          }
        }
        this.queued = keep;
      }
      for (const [index, w] of this.proposals) {
        if (w.deadline <= now) {
          this.proposals.delete(index);
          w.reject(new TimeoutError(w.what, w.timeoutMs));
        } else if (w.deadline < next) next = w.deadline;
      }
      this.proposalDeadline = next;
    }
    if (now >= this.readDeadline) {
      let next = Infinity;
      for (const w of this.pendingReads) {
        if (w.done) {
          this.pendingReads.delete(w);
        } else if (w.deadline <= now) {
          this.pendingReads.delete(w);
          w.done = true;
          const lead = this.rawNode.raft.lead;
          w.reject(
            lead === NONE ? new NotLeaderError(NONE) : new TimeoutError("readIndex", w.timeoutMs),
          );
        } else if (w.deadline < next) next = w.deadline;
      }
      this.readDeadline = next;
    }
  }

  /** Resolves when `check()` holds (checked after every pass and tick); `check` may throw. */
  private waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      try {
        if (check()) return resolve();
      } catch (e) {
        return reject(e);
      }
      const c: CondWaiter = {
        check,
        resolve,
        reject,
        timer: this.clock.setTimeout(() => {
          this.conds = this.conds.filter((x) => x !== c);
          reject(new TimeoutError(what, timeoutMs));
        }, timeoutMs),
      };
      this.conds.push(c);
    });
  }

  private waitConfIdle(timeoutMs: number): Promise<void> {
    return this.waitFor(
      () => {
        const r = this.rawNode.raft;
        if (r.role !== "leader") throw new NotLeaderError(r.lead);
        return !r.trk.isJoint() && r.pendingConfIndex <= r.log.applied;
      },
      timeoutMs,
      "waiting for the configuration to settle",
    );
  }

  private checkConds(): void {
    if (this.conds.length === 0) return;
    const keep: CondWaiter[] = [];
    for (const c of this.conds) {
      let ok = false;
      try {
        ok = c.check();
      } catch (e) {
        this.clock.clearTimeout(c.timer);
        c.reject(e as Error);
        continue;
      }
      if (ok) {
        this.clock.clearTimeout(c.timer);
        c.resolve();
      } else keep.push(c);
    }
    this.conds = keep;
  }

  // ---------------------------------------------------------------- loop

  private onMessage(m: Message): void {
    if (this.stopped || this.fatal) return;
    if (m.type === MessageType.Unreachable) {
      // The transport dropped messages to m.from: fall back to probing that follower.
      this.rawNode.reportUnreachable(m.from);
    } else this.rawNode.step(m, this.clock.now());
    this.sendImmediate();
    this.schedule();
  }

  /**
   * While a pass is still persisting or applying (an apply can wait seconds for the state
   * machine's compaction), sends at once what needs nothing persisted: heartbeats, their
   * responses, read-index traffic ({@link RawNode.takeImmediateMessages}). Liveness then never
   * depends on how long an apply takes.
   */
  private sendImmediate(): void {
    if (!this.running) return;
    const ms = this.rawNode.takeImmediateMessages();
    if (ms.length) this.transport.send(ms);
  }

  private onTick(): void {
    if (this.stopped || this.fatal) return;
    this.ticks++;
    const now = this.clock.now();
    this.expireRequests(now);
    this.rawNode.tick(now);
    // Re-issue unanswered read batches every election timeout (leader changes, lost messages).
    const every = this.opts.config.electionTick;
    for (const [key, b] of this.readBatches) {
      if (b.waiters.every((w) => w.done)) {
        this.readBatches.delete(key); // every waiter timed out
        continue;
      }
      if (this.ticks - b.issuedAtTick >= every) {
        b.issuedAtTick = this.ticks;
        this.rawNode.readIndex(b.ctx, this.clock.now());
      }
    }
    this.checkConds();
    this.sendImmediate();
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.stopped || this.fatal) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (!this.running) {
        this.running = this.run().finally(() => {
          this.running = null;
          // Work may have arrived while the last pass was finishing.
          if (
            !this.stopped &&
            (this.rawNode.hasReady() || this.newReads.length || this.queued.length)
          ) this.schedule();
        });
      }
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped && !this.fatal) {
      this.flushQueued();
      this.issueReads();
      if (!this.rawNode.hasReady()) break;
      const rd = this.rawNode.ready();
      try {
        await this.handleReady(rd);
      } catch (e) {
        this.halt(e as Error);
        return;
      }
      this.checkConds();
    }
  }

  /**
   * Halts on a fatal error: logs why, stops ticking and stepping (nothing is buffered any more),
   * fails every waiting request and tells the {@link onFatal} callbacks. A failed fsync is never
   * retried (after a failed fsync the kernel may have dropped the dirty pages: a retry that
   * succeeds proves nothing), and stop() does not sync again.
   */
  private halt(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.logger.error("raft: fatal error; node halted", {
      id: this.rawNode.raft.id,
      err: String(err),
    });
    if (this.interval !== undefined) this.clock.clearInterval(this.interval);
    this.failAll(err);
    for (const cb of this.fatalCbs) {
      try {
        cb(err);
      } catch (e) {
        this.logger.warn("raft: fatal error callback failed", { err: String(e) });
      }
    }
  }

  private issueReads(): void {
    const live = this.newReads.filter((w) => !w.done);
    this.newReads = [];
    if (live.length === 0) return;
    const ctx = new Uint8Array(16);
    ctx.set(this.readNonce);
    new DataView(ctx.buffer).setFloat64(8, ++this.readSeq);
    const key = readKey(ctx);
    this.readBatches.set(key, { ctx, key, waiters: live, index: -1, issuedAtTick: this.ticks });
    this.rawNode.readIndex(ctx, this.clock.now());
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState && rd.softState.lead !== this.lead) {
      this.lead = rd.softState.lead;
      const term = this.rawNode.raft.term;
      for (const cb of this.leaderCbs) {
        try {
          cb(this.lead, term);
        } catch (e) {
          this.logger.warn("raft: leader change callback failed", { err: String(e) });
        }
      }
    }
    if (rd.messages.length) this.transport.send(rd.messages);
    if (rd.snapshot) this.log.applySnapshot(rd.snapshot);
    if (rd.entries.length) this.log.append(rd.entries);
    if (rd.hardState) this.log.setHardState(rd.hardState);
    // A hard state that only advances the commit index need not be synced at once: commit
    // is monotonic and re-derived on restart (the next sync covers it).
    const voteChanged = rd.hardState !== null &&
      (rd.hardState.term !== this.syncedTerm || rd.hardState.vote !== this.syncedVote);
    // Before applying a configuration change, its commit must be durable: a node that
    // restarted with an older commit would fall back into the previous (joint) configuration
    // and could wait forever for votes of members that have already left.
    const confCommitted = rd.committedEntries.some((e) => e.type === EntryType.ConfChange);
    if (rd.snapshot || rd.entries.length || voteChanged || confCommitted) {
      await this.log.sync();
      if (rd.hardState) {
        this.syncedTerm = rd.hardState.term;
        this.syncedVote = rd.hardState.vote;
      }
    }
    if (rd.snapshot) {
      const meta = rd.snapshot.meta;
      // A local snapshot still reading the state machine finishes (or fails) first.
      if (this.snapshotRun) await this.snapshotRun;
      await this.sm.restore(rd.snapshot.data, meta.index);
      this.applied = meta.index;
      this.snapshotIndex = meta.index;
      this.appliedBytes = 0;
      this.lastSnapshotBytes = rd.snapshot.data.length;
      for (const [idx, w] of this.proposals) {
        if (idx <= meta.index) {
          w.reject(new ProposalDroppedError("outcome unknown: superseded by a snapshot"));
          this.proposals.delete(idx);
        }
      }
      try {
        this.opts.onSnapshotRestored?.(meta);
      } catch (err) {
        this.logger.warn("raft: onSnapshotRestored callback failed", { err: String(err) });
      }
    }
    if (rd.persistedMessages.length) this.transport.send(rd.persistedMessages);
    if (rd.committedEntries.length) await this.apply(rd.committedEntries);
    for (const rs of rd.readStates) {
      const b = this.readBatches.get(readKey(rs.context));
      if (!b) continue;
      this.readBatches.delete(b.key);
      b.index = rs.index;
      this.answeredReads.push(b);
    }
    this.rawNode.advance(rd);
    this.releaseReads();
    this.maybeSnapshot();
  }

  private releaseReads(): void {
    if (this.answeredReads.length === 0) return;
    const keep: ReadBatch[] = [];
    for (const b of this.answeredReads) {
      if (this.applied >= b.index) {
        for (const w of b.waiters) {
          if (w.done) continue;
          w.done = true;
          this.pendingReads.delete(w);
          w.resolve();
        }
      } else keep.push(b);
    }
    this.answeredReads = keep;
  }

  private async apply(ents: Entry[]): Promise<void> {
    const empty = new Uint8Array(0);
    const cmds: ApplyCommand[] = ents.map((e) => ({
      index: e.index,
      data: e.type === EntryType.Normal ? e.data : empty,
    }));
    const results = await this.sm.apply(cmds);
    // A snapshot stepped while this pass awaited may already cover some of these entries: the
    // core's configuration then includes their changes (the snapshot restores the state too).
    const covered = this.rawNode.raft.log.firstIndex() - 1;
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i];
      if (e.type === EntryType.ConfChange && e.index > covered) {
        const r = this.rawNode.applyConfChangeEntry(e);
        if (r) {
          try {
            this.opts.onConfChange?.(r.cc, r.conf, e.index);
          } catch (err) {
            this.logger.warn("raft: onConfChange callback failed", { err: String(err) });
          }
        }
      }
      this.applied = e.index;
      this.appliedBytes += e.data.length;
      const w = this.proposals.get(e.index);
      if (w) {
        this.proposals.delete(e.index);
        if (w.term === e.term) w.resolve(results[i]);
        else w.reject(new ProposalDroppedError("entry overwritten by another term"));
      }
    }
  }

  /**
   * Takes a snapshot in the background when enough entries (or bytes, see
   * {@link RaftNodeOptions.snapshotBytes}) were applied since the last one. The processing loop
   * does not wait for it: the state machine captures a consistent view at `index` at once,
   * serializes it off the loop, and the log is compacted when it is ready.
   */
  private maybeSnapshot(): void {
    if (this.snapshotRun) return;
    const th = this.opts.snapshotThreshold;
    const bytes = this.opts.snapshotBytes ?? 0;
    const byEntries = th > 0 && this.applied - this.snapshotIndex >= th;
    const byBytes = bytes > 0 && this.appliedBytes >= Math.max(bytes, this.lastSnapshotBytes);
    if (!byEntries && !byBytes) return;
    const index = this.applied;
    const appliedBytes = this.appliedBytes;
    if (this.sm.appliedIndex() !== index) return;
    // A snapshot received while this pass awaited (messages are stepped meanwhile) may already
    // have compacted the core's log past `index`: it supersedes this one.
    if (index < this.rawNode.raft.log.firstIndex()) return;
    const term = this.rawNode.raft.log.term(index);
    const conf = this.rawNode.status().conf;
    const memberContexts = this.rawNode.memberContexts();
    this.snapshotRun = this.sm.snapshot().then((data) => {
      // A snapshot received from the leader meanwhile may already cover more.
      if (this.stopped || this.fatal || index <= this.snapshotIndex) return;
      this.log.createSnapshot({ meta: { index, term, conf, memberContexts }, data });
      this.snapshotIndex = index;
      this.appliedBytes = Math.max(0, this.appliedBytes - appliedBytes);
      this.lastSnapshotBytes = data.length;
      this.logger.info("raft: snapshot taken", {
        id: this.rawNode.raft.id,
        index,
        bytes: data.length,
        trigger: byEntries ? "entries" : "bytes",
      });
    }).catch((e) => {
      if (!this.stopped) this.logger.warn("raft: snapshot failed", { index, err: String(e) });
    }).finally(() => {
      this.snapshotRun = null;
    });
  }
}
