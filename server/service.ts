/**
 * The operations a node serves, independent of the front-end (binary client protocol or
 * HTTP/JSON): writes go through Raft, linearizable reads through a ReadIndex barrier,
 * serializable reads straight to the local state machine. Errors are the client library's typed
 * errors so both front-ends map them the same way.
 *
 * @module
 */
import type { ConfState } from "../raft/types.ts";
import type { Logger } from "../raft/logger.ts";
import {
  atomicCommand,
  deleteCommand,
  encodeCommand,
  expirySweepCommand,
  putCommand,
  registerSessionCommand,
  setClusterIdCommand,
} from "../storage/command.ts";
import type { KvStateMachine } from "../storage/kv_state_machine.ts";
import {
  type AtomicCheck,
  type AtomicMutation,
  type AtomicOperation,
  type AtomicResult,
  checkAtomicLimits,
  isValueEncoding,
  type KvEntry,
  v8SumParameterProblem,
  ValueEncoding,
  VERSIONSTAMP_BYTES,
} from "../storage/kv_model.ts";
import { compareBytes } from "../storage/bytes.ts";
import {
  GokvError,
  InternalError,
  InvalidArgumentError,
  MutationTypeError,
  NotFoundError,
  NotLeaderError,
  SessionExpiredError,
  TimeoutError,
  UnavailableError,
} from "../client/errors.ts";
import type { MemberInfo, ScanRange } from "../client/protocol.ts";
import {
  type AtomicLimits,
  checkKey,
  checkValue,
  defaultNodeLimits,
  EXPIRY_SWEEP_MAX_KEYS,
  LimitError,
  MAX_ADDRESS_BYTES,
  MAX_GET_MANY_KEYS,
  MAX_KEY_BYTES,
  MAX_SCAN_PAGE_PAIRS,
  MAX_WATCH_WAIT_MS,
  type NodeLimits,
  WATCH_POLL_MAX_EVENTS,
} from "../config/limits.ts";
import { type AddressBook, encodeMemberContext, type MemberAddrs } from "./members.ts";
import { checkSelector, WatchHub, type WatchPoll, type WatchSelector } from "./watch.ts";
import { WatchStreams } from "./watch_stream.ts";
import type { ServerMetrics } from "./server_metrics.ts";

/** The Raft status fields the server reads (raft/node.ts `RaftNode.status()`). */
export interface RaftStatusLike {
  /** This node. */
  id: number;
  /** Current term. */
  term: number;
  /** Highest committed index. */
  commit: number;
  /** Highest applied index. */
  applied: number;
  /** Role name or enum value. */
  role: unknown;
  /** Known leader (0 none). */
  lead: number;
  /** Current configuration. */
  conf: ConfState;
  /** Latest snapshot index. */
  snapshotIndex: number;
  /** Entries in the log. */
  logSize: number;
}

/** The subset of raft/node.ts `RaftNode` the server uses (fakes implement it in tests). */
export interface RaftApi {
  /** Proposes a command; resolves with the state machine's apply result. `batch`: it may share
   * an entry with other client writes (storage/command.ts encodeBatch). */
  propose(data: Uint8Array, opts?: { timeoutMs?: number; batch?: boolean }): Promise<unknown>;
  /** Linearizable read barrier: resolves once local state reflects every write committed
   * before the call. */
  readIndex(opts?: { timeoutMs?: number }): Promise<void>;
  /** Adds a node (learner, then promoted). */
  addMember(id: number, context: Uint8Array, opts?: { timeoutMs?: number }): Promise<unknown>;
  /** Removes a node. */
  removeMember(id: number, opts?: { timeoutMs?: number }): Promise<unknown>;
  /** Hands leadership to `id`. */
  transferLeader(id: number, opts?: { timeoutMs?: number }): Promise<unknown>;
  /** The node's Raft status. */
  status(): RaftStatusLike;
}

/** A client session for exactly-once writes. */
export interface WriteSession {
  /** The session id from {@link KvService.registerSession} (never 0). */
  clientId: bigint;
  /** Increasing sequence number (reused on retry). */
  seq: number;
}

/** One page of a scan: the pairs and the cursor of the next page (undefined: the last page). */
export interface ScanPage {
  /** Pairs in key order. */
  pairs: [Uint8Array, Uint8Array][];
  /** Pass as `cursor` to get the next page; undefined when the scan is complete. */
  next?: Uint8Array;
}

/** How a read is served: `strong` (linearizable: a ReadIndex barrier first) or `eventual`
 * (serializable: this node's state machine as it is, possibly behind the leader). */
export type Consistency = "strong" | "eventual";

/** Entries read by {@link KvService.getMany}. */
export interface GetManyResult {
  /** One per requested key, in order: null when absent (or expired). */
  entries: (KvEntry | null)[];
  /** The consistency the read had. */
  consistency: Consistency;
}

/** A range read ({@link KvService.range}). */
export interface RangeRequest {
  /** Inclusive lower bound. */
  start?: Uint8Array;
  /** Exclusive upper bound. */
  end?: Uint8Array;
  /** Only keys with this prefix (combined with start/end). */
  prefix?: Uint8Array;
  /** At most this many entries (default and maximum: the node's page size / MAX_SCAN_PAGE_PAIRS). */
  limit?: number;
  /** Descending key order. */
  reverse?: boolean;
  /** The `cursor` of the previous page: continue after (reverse: before) that key. */
  cursor?: Uint8Array;
  /** Default `strong`. */
  consistency?: Consistency;
}

/** One page of a range read. */
export interface RangeResult {
  /** Entries in key order (descending with `reverse`). */
  entries: KvEntry[];
  /** Present when more entries may follow: pass it as `cursor`. A page may hold fewer than
   * `limit` entries and still have a cursor (the page byte budget). */
  cursor?: Uint8Array;
  /** The consistency the read had. */
  consistency: Consistency;
}

/** Role names as reported by status. */
export type RoleName = "leader" | "follower" | "candidate" | "learner";

const ROLE_NAMES: Record<string, RoleName> = {
  leader: "leader",
  follower: "follower",
  candidate: "candidate",
  // A pre-candidate (Pre-Vote phase) reports as a candidate; `state` keeps the exact name.
  precandidate: "candidate",
  "pre-candidate": "candidate",
  learner: "learner",
};

/** Normalizes a Raft role (string or enum-ish) into a status role name. */
export function roleName(role: unknown, isLearner: boolean): RoleName {
  const r = ROLE_NAMES[String(role).toLowerCase().replace(/[_\s]/g, "")] ??
    ROLE_NAMES[String(role).toLowerCase()] ?? "follower";
  if (isLearner && r === "follower") return "learner";
  return r;
}

/** Options of {@link KvService}. */
export interface ServiceOptions {
  /** This node's id. */
  id: number;
  /** The Raft node. */
  raft: RaftApi;
  /** The local state machine. */
  sm: KvStateMachine;
  /** Addresses of members. */
  book: AddressBook;
  /** Metrics to update. */
  metrics: ServerMetrics;
  /** Deadline of one request inside the server (default 2 500 ms). */
  requestTimeoutMs?: number;
  /** Where background work (member promotion) reports. */
  logger?: Logger;
  /** Extra fields for status (version, addresses...). */
  statusExtra?: () => Record<string, unknown>;
  /** The node's limits (scan page size and bytes); default {@link defaultNodeLimits}. */
  limits?: NodeLimits;
  /** A client session expires after this long unused (default {@link DEFAULT_SESSION_IDLE_MS}). */
  sessionIdleTimeoutMs?: number;
  /** Bound of the session table (default {@link DEFAULT_MAX_SESSIONS}). */
  maxSessions?: number;
  /** The clock whose readings go into proposed commands (default `Date.now`). */
  now?: () => number;
  /** How often the leader looks for expired keys to sweep (ms; default
   * {@link DEFAULT_EXPIRY_SWEEP_MS}; 0: never). */
  expirySweepMs?: number;
  /** The change history for watches (server.ts attaches it to the state machine before the log
   * is replayed); default: one attached when the service is created. */
  watch?: WatchHub;
}

/** Default interval of the leader's expiry sweeps: a key is deleted at most about this long plus
 * one commit after its expiry time (and is invisible to reads from the first command the state
 * machine applies with a later time). */
export const DEFAULT_EXPIRY_SWEEP_MS = 250;

/** Default idle time after which a client session expires: one hour. */
export const DEFAULT_SESSION_IDLE_MS = 60 * 60 * 1000;
/** Default bound of the session table. */
export const DEFAULT_MAX_SESSIONS = 10_000;

function mapRaftError(
  e: unknown,
  leaderHint: () => MemberAddrs | undefined,
  leaderId: number,
): Error {
  if (e instanceof GokvError || e instanceof LimitError) return e;
  const err = e as Error & { leaderId?: number; timeoutMs?: number };
  switch (err?.name) {
    case "NotLeaderError": {
      const lid = err.leaderId ?? leaderId;
      const m = lid ? leaderHint() : undefined;
      return new NotLeaderError(lid, m?.client ?? "", err.message);
    }
    case "TimeoutError":
      return new TimeoutError(err.message, err.timeoutMs ?? 0);
    case "ProposalDroppedError":
    case "StoppedError":
    case "ConfChangeInProgressError":
      return new UnavailableError(err.message);
    case "InvalidConfChangeError":
      return new InvalidArgumentError(err.message);
    default:
      return new InternalError(err?.message ?? String(e));
  }
}

/** The node's operations. */
export class KvService {
  private inflight = 0;
  private drainWaiters: (() => void)[] = [];
  private closing = false;
  private readonly timeoutMs: number;
  /** The node's limits. */
  readonly limits: NodeLimits;

  /** The change history watches read. */
  readonly watchHub: WatchHub;
  /** The node's watch streams (HTTP and KV Connect): their bound and what they hold. */
  readonly watchStreams: WatchStreams;

  /** Creates the service. */
  constructor(private readonly o: ServiceOptions) {
    this.timeoutMs = o.requestTimeoutMs ?? 2_500;
    this.limits = o.limits ?? defaultNodeLimits();
    this.watchHub = o.watch ?? new WatchHub(o.sm, {
      maxEvents: this.limits.watchHistoryEvents,
      maxBytes: this.limits.watchHistoryBytes,
    });
    this.watchStreams = new WatchStreams(this.limits);
  }

  /**
   * One poll of a watch (server/watch.ts), served by this node from its own state (eventually
   * consistent: a follower answers what it has applied): without `after` the current state of
   * the selected keys first; then the matching commits after it (or after `after`), waiting up
   * to `waitMs` for one. {@link WatchCompactedError} when this node's history does not reach
   * back to `after`.
   */
  watchPoll(
    sel: WatchSelector,
    opts: { after?: Uint8Array; waitMs?: number; maxEvents?: number; signal?: AbortSignal } = {},
  ): Promise<WatchPoll> {
    try {
      checkSelector(sel);
      if (opts.after !== undefined && opts.after.length !== VERSIONSTAMP_BYTES) {
        throw new InvalidArgumentError(`a versionstamp has ${VERSIONSTAMP_BYTES} bytes`);
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const waitMs = Math.max(0, Math.min(opts.waitMs ?? 0, MAX_WATCH_WAIT_MS));
    const max = Math.max(
      1,
      Math.min(opts.maxEvents ?? WATCH_POLL_MAX_EVENTS, WATCH_POLL_MAX_EVENTS),
    );
    const signal = opts.signal
      ? AbortSignal.any([opts.signal, this.closingAc.signal])
      : this.closingAc.signal;
    return this.run(() => this.watchHub.poll(sel, opts.after, waitMs, max, signal));
  }

  /** This node's id. */
  get id(): number {
    return this.o.id;
  }

  /** Stops accepting new requests (they fail with {@link UnavailableError}) and stops the
   * expiry sweeper. */
  stopAccepting(): void {
    this.closing = true;
    this.closingAc.abort();
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  private sweepTimer: ReturnType<typeof setTimeout> | undefined;
  /** Aborted by {@link stopAccepting}: ends waiting watch polls. */
  private readonly closingAc = new AbortController();

  /**
   * Starts the expiry sweeper: while this node leads, every `expirySweepMs` it asks the state
   * machine for the earliest expiry time and, when that time has come by this node's clock,
   * proposes an ExpirySweep carrying the clock reading (again at once while a sweep reports more
   * due keys). The state machine never reads a clock: every replica deletes exactly what the
   * sweep covers.
   */
  startExpirySweeper(): void {
    const every = this.o.expirySweepMs ?? DEFAULT_EXPIRY_SWEEP_MS;
    if (every <= 0 || this.sweepTimer || this.closing) return;
    const tick = async () => {
      try {
        await this.sweepExpired();
      } catch (e) {
        this.o.logger?.debug?.("expiry sweep failed", { error: (e as Error).message });
      }
      if (!this.closing) {
        this.sweepTimer = setTimeout(tick, every);
        Deno.unrefTimer(this.sweepTimer);
      }
    };
    this.sweepTimer = setTimeout(tick, every);
    Deno.unrefTimer(this.sweepTimer);
  }

  /** One round of the sweeper (exported for tests): proposes sweeps while keys are due and this
   * node leads; resolves with the number of keys deleted. */
  async sweepExpired(): Promise<number> {
    let total = 0;
    for (let round = 0; round < 100 && this.isLeader() && !this.closing; round++) {
      const next = await this.o.sm.nextExpiry();
      const now = this.now();
      if (next === undefined || next > now) break;
      const r = await this.run(() =>
        this.propose(encodeCommand(expirySweepCommand(EXPIRY_SWEEP_MAX_KEYS, now)))
      ) as { expired?: number; more?: boolean } | null;
      total += r?.expired ?? 0;
      if (!r?.more) break;
    }
    return total;
  }

  /** The cluster id as this node's state machine has it (undefined: not applied here yet). */
  clusterId(): string | undefined {
    return this.o.sm.clusterId();
  }

  /**
   * Proposes `id` as the cluster id (storage/kv_core.ts: the first one applied wins); resolves
   * with the id in force after it. Only the leader proposes ({@link NotLeaderError}).
   */
  proposeClusterId(id: string): Promise<string> {
    return this.run(async () => {
      this.requireLeader();
      const r = await this.propose(encodeCommand(setClusterIdCommand(id))) as
        | { clusterId?: string }
        | null;
      if (typeof r?.clusterId !== "string") throw new InternalError("no cluster id applied");
      return r.clusterId;
    });
  }

  /** Resolves when no request is in flight (or after `timeoutMs`). */
  async drain(timeoutMs = 5_000): Promise<void> {
    if (this.inflight === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((r) => this.drainWaiters.push(r)),
      new Promise<void>((r) => timer = setTimeout(r, timeoutMs)),
    ]);
    clearTimeout(timer);
  }

  /** Requests in flight. */
  get pending(): number {
    return this.inflight;
  }

  /** Runs one request: refused once the node is shutting down, counted in {@link pending}, Raft
   * errors mapped to the client errors. */
  private async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) throw new UnavailableError("node is shutting down");
    this.inflight++;
    try {
      return await fn();
    } catch (e) {
      throw mapRaftError(e, () => this.leaderAddrs(), this.leaderId());
    } finally {
      if (--this.inflight === 0 && this.drainWaiters.length) {
        for (const w of this.drainWaiters.splice(0)) w();
      }
    }
  }

  /** The leader's id as this node knows it (0 none). */
  leaderId(): number {
    return this.o.raft.status().lead;
  }

  /** The leader's addresses, if known. */
  leaderAddrs(): MemberAddrs | undefined {
    const lead = this.leaderId();
    return lead ? this.o.book.get(lead) : undefined;
  }

  /** True when this node believes it leads. */
  isLeader(): boolean {
    const s = this.o.raft.status();
    return s.lead === this.o.id && roleName(s.role, false) === "leader";
  }

  /** Throws {@link NotLeaderError} (with the leader's client address) unless this node leads. */
  private requireLeader(): void {
    if (!this.isLeader()) {
      throw new NotLeaderError(this.leaderId(), this.leaderAddrs()?.client ?? "");
    }
  }

  /** Proposes a command; resolves with its apply result, throws the typed error of a refusal
   * (an atomic's failed checks are a result, not a refusal). */
  private async propose(data: Uint8Array, batch = false): Promise<unknown> {
    this.o.metrics.proposals.inc();
    let result: unknown;
    try {
      result = await this.o.raft.propose(data, { timeoutMs: this.timeoutMs, batch });
    } catch (e) {
      this.o.metrics.proposalsFailed.inc();
      throw e;
    }
    const r = result as { ok?: boolean; error?: string; message?: string } | null | undefined;
    if (r && r.ok === false) {
      const message = r.message ?? "command rejected";
      if (r.error === "session_expired") throw new SessionExpiredError(message);
      if (r.error === "session_seq" || r.error === "bad_session") {
        throw new InvalidArgumentError(message);
      }
      if (r.error === "check_failed") return result;
      if (r.error === "value_type") throw new MutationTypeError(message);
      throw new InternalError(message);
    }
    return result;
  }

  /** The clock reading carried by a proposed command. */
  private now(): number {
    return Math.max(0, Math.floor((this.o.now ?? Date.now)()));
  }

  /** A session is refused before the log when its id is 0 (no registration has index 0). */
  private checkSession(session: WriteSession | undefined): void {
    if (session && session.clientId === 0n) {
      throw new InvalidArgumentError("session id 0 is invalid: register a session first");
    }
    if (session && (!Number.isSafeInteger(session.seq) || session.seq < 1)) {
      throw new InvalidArgumentError(`session seq must be 1 or more, not ${session.seq}`);
    }
  }

  /**
   * Opens a client session (a command in the log); resolves with its id, the command's log index.
   * Not idempotent: a retried registration may open a second session (the unused one expires).
   */
  registerSession(): Promise<bigint> {
    return this.run(async () => {
      const r = await this.propose(encodeCommand(registerSessionCommand(
        this.o.sessionIdleTimeoutMs ?? DEFAULT_SESSION_IDLE_MS,
        this.o.maxSessions ?? DEFAULT_MAX_SESSIONS,
        this.now(),
      ))) as { sessionId?: bigint } | null;
      if (typeof r?.sessionId !== "bigint") throw new InternalError("registration without an id");
      return r.sessionId;
    });
  }

  /** Writes `value` at `key`; resolves with the write's versionstamp (exactly once per session seq; without a session: proposed once, at
   * most once). A key or value over its limit (config/limits.ts) is refused with
   * {@link LimitError} before anything is proposed; an unknown or expired session is refused with
   * {@link SessionExpiredError}. */
  put(key: Uint8Array, value: Uint8Array, session?: WriteSession): Promise<Uint8Array | undefined> {
    try {
      checkKeyArg(key);
      checkValue(value);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      this.checkSession(session);
      return versionstampOf(
        await this.propose(encodeCommand(putCommand(key, value, session, this.now())), true),
      );
    });
  }

  /** Deletes `key` (exactly once per session seq; see {@link put}); the key limit applies as for
   * put. */
  delete(key: Uint8Array, session?: WriteSession): Promise<Uint8Array | undefined> {
    try {
      checkKeyArg(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      this.checkSession(session);
      return versionstampOf(
        await this.propose(encodeCommand(deleteCommand(key, session, this.now())), true),
      );
    });
  }

  /**
   * Applies an atomic operation (kv_model.ts): every check, then every mutation, all or nothing,
   * in one log entry. Resolves `{ ok: true, versionstamp }` or `{ ok: false, failedChecks }`.
   * Refused before anything is proposed: over a limit of config/limits.ts ({@link LimitError};
   * the node's configurable `atomic_*` limits, Deno KV's by default),
   * malformed ({@link InvalidArgumentError}: empty key, a versionstamp not of 10 bytes, an
   * unknown encoding, a u64 operand or LE64 value not of 8 bytes, a bad expiry time). A sum, min
   * or max on a stored value that is not a u64 rejects with {@link MutationTypeError} (nothing
   * applied); so does a V8 sum (`encoding: V8`) whose operand or bounds are not V8 numbers /
   * bigints of one type (before proposing) or whose stored value is of another type or whose
   * result leaves its bounds without `clamp` (denokv's messages). With a session the operation is applied exactly once per seq.
   */
  atomic(op: AtomicOperation, opts: { session?: WriteSession } = {}): Promise<AtomicResult> {
    try {
      validateAtomic(op.checks, op.mutations, this.limits);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      this.checkSession(opts.session);
      const r = await this.propose(
        encodeCommand(atomicCommand(op.checks, op.mutations, opts.session, this.now())),
        true,
      ) as { ok: boolean; versionstamp?: Uint8Array; failedChecks?: number[] } | null;
      if (r?.ok === true && r.versionstamp) return { ok: true, versionstamp: r.versionstamp };
      if (r?.ok === false) return { ok: false, failedChecks: r.failedChecks ?? [] };
      throw new InternalError("atomic operation without a result");
    });
  }

  /** Reads the entries of `keys` from one state-machine view (null: absent). `strong` (the
   * default) waits for a ReadIndex barrier first. At most {@link MAX_GET_MANY_KEYS} keys. */
  getMany(
    keys: Uint8Array[],
    opts: { consistency?: Consistency } = {},
  ): Promise<GetManyResult> {
    const consistency = opts.consistency ?? "strong";
    try {
      if (keys.length > MAX_GET_MANY_KEYS) {
        throw new LimitError("get_many_keys", MAX_GET_MANY_KEYS, keys.length);
      }
      for (const k of keys) checkKeyArg(k);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      await this.barrier(consistency === "strong");
      this.o.metrics.reads.inc();
      return { entries: await this.o.sm.getEntries(keys), consistency };
    });
  }

  /**
   * One page of a range read, from one state-machine view: the entries in `[start, end)` (and
   * under `prefix`), ascending or with `reverse` descending, at most `limit` (default and
   * maximum as for {@link scan}) and about the node's `scan_page_bytes`; `cursor` continues the
   * previous page. `strong` (the default) waits for a ReadIndex barrier first.
   */
  range(req: RangeRequest): Promise<RangeResult> {
    const consistency = req.consistency ?? "strong";
    for (const k of [req.start, req.end, req.prefix, req.cursor]) {
      if (k && k.length > MAX_KEY_BYTES) {
        return Promise.reject(new LimitError("key_bytes", MAX_KEY_BYTES, k.length));
      }
    }
    if (req.limit !== undefined && (!Number.isInteger(req.limit) || req.limit < 0)) {
      return Promise.reject(new InvalidArgumentError(`bad limit ${req.limit}`));
    }
    const pagePairs = Math.min(req.limit || this.limits.scanPagePairs, MAX_SCAN_PAGE_PAIRS);
    const budget = this.limits.scanPageBytes;
    let start = req.start;
    let end = req.end;
    if (req.cursor && !req.reverse) {
      const after = new Uint8Array(req.cursor.length + 1);
      after.set(req.cursor);
      if (!start || compareBytes(after, start) > 0) start = after;
    } else if (req.cursor) {
      if (!end || compareBytes(req.cursor, end) < 0) end = req.cursor;
    }
    return this.run(async () => {
      await this.barrier(consistency === "strong");
      this.o.metrics.reads.inc();
      if (req.limit === 0) return { entries: [], consistency };
      const got = await this.o.sm.scanEntries({
        start,
        end,
        prefix: req.prefix,
        reverse: req.reverse,
        limit: pagePairs + 1,
        maxBytes: budget,
      });
      // Keep entries within the budget (at least one) and the page size; anything read beyond
      // them proves that another page follows.
      let kept = 0;
      let bytes = 0;
      for (const e of got) {
        const n = e.key.length + e.value.length;
        if (kept === pagePairs || (kept > 0 && bytes + n > budget)) break;
        bytes += n;
        kept++;
      }
      const entries = got.slice(0, kept);
      // A lone entry over the budget stops the state machine's scan too: more may follow.
      const more = kept < got.length || (kept === 1 && bytes > budget);
      return more && kept > 0
        ? { entries, cursor: entries[kept - 1].key, consistency }
        : { entries, consistency };
    });
  }

  /** A linearizable read's ReadIndex barrier (shared with the reads waiting at that moment). */
  private async barrier(linearizable: boolean): Promise<void> {
    if (!linearizable) return;
    const t0 = performance.now();
    await this.sharedReadIndex();
    this.o.metrics.readIndexSeconds.observe((performance.now() - t0) / 1000);
  }

  /** The ReadIndex round in flight, if any. */
  private readRound: Promise<void> | undefined;
  /** The round that starts when the one in flight ends, shared by every read waiting for it. */
  private nextReadRound: Promise<void> | undefined;

  /**
   * A ReadIndex barrier shared by concurrent reads: at most one round in flight; reads that
   * arrive meanwhile wait for it to end and share the next one (a round that started before a
   * read arrived cannot serve it). Without this, requests that reach the service one at a time
   * (Deno's KV Connect client sends each as its own HTTP/2 stream) would each cost a heartbeat
   * round; reads of one event-loop turn start their round together (a microtask later). A read
   * waits at most for the round in flight and its own (so up to twice the request timeout when
   * no leader answers); a failed round fails the reads that shared it.
   */
  private sharedReadIndex(): Promise<void> {
    if (this.nextReadRound) return this.nextReadRound;
    const start = () => {
      this.nextReadRound = undefined;
      const round = this.o.raft.readIndex({ timeoutMs: this.timeoutMs });
      this.readRound = round;
      const done = () => {
        if (this.readRound === round) this.readRound = undefined;
      };
      round.then(done, done);
      return round;
    };
    const before = this.readRound;
    this.nextReadRound = before
      ? before.then(start, start)
      : new Promise<void>((resolve) => queueMicrotask(resolve)).then(start);
    return this.nextReadRound;
  }

  /** Reads `key`; undefined when missing. */
  get(key: Uint8Array, linearizable: boolean): Promise<Uint8Array | undefined> {
    try {
      checkKeyArg(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      await this.barrier(linearizable);
      this.o.metrics.reads.inc();
      return await this.o.sm.get(key);
    });
  }

  /**
   * One page of a range scan in key order: at most `range.limit` pairs (default and maximum:
   * the node's `scan_page_pairs` / {@link MAX_SCAN_PAGE_PAIRS}) and about `scan_page_bytes` of
   * keys and values (always at least one pair). `range.cursor` (the `next` of the previous page)
   * continues after the last key of that page. Memory per page is bounded by the byte budget
   * plus one pair, whatever the size of the range.
   */
  scan(range: ScanRange, linearizable: boolean): Promise<ScanPage> {
    return this.range({
      start: range.start,
      end: range.end,
      prefix: range.prefix,
      cursor: range.cursor,
      limit: range.limit || undefined,
      consistency: linearizable ? "strong" : "eventual",
    }).then((r) => {
      const pairs = r.entries.map((e): [Uint8Array, Uint8Array] => [e.key, e.value]);
      return r.cursor ? { pairs, next: r.cursor } : { pairs };
    });
  }

  /** The members of the current configuration with their addresses. */
  members(): MemberInfo[] {
    const conf = this.o.raft.status().conf;
    const voters = new Set([...conf.voters, ...conf.votersOutgoing]);
    const learners = new Set([...conf.learners, ...conf.learnersNext]);
    const out: MemberInfo[] = [];
    for (const id of [...new Set([...voters, ...learners])].sort((a, b) => a - b)) {
      const a = this.o.book.get(id);
      out.push({
        id,
        learner: !voters.has(id),
        peer: a?.peer ?? "",
        client: a?.client ?? "",
        http: a?.http ?? "",
      });
    }
    return out;
  }

  /**
   * Adds a member. Must run on the leader. Resolves once the node is in the configuration as a
   * learner; the promotion to voter happens in the background once it has caught up (so the new
   * node may be started before or after this call).
   */
  addMember(m: MemberAddrs): Promise<void> {
    if (!Number.isInteger(m.id) || m.id < 1 || m.id > 0x7fffffff) {
      return Promise.reject(new InvalidArgumentError(`bad node id ${m.id}`));
    }
    for (const a of [m.peer, m.client, m.http]) {
      if (typeof a === "string" && a.length > MAX_ADDRESS_BYTES) {
        return Promise.reject(new LimitError("address_bytes", MAX_ADDRESS_BYTES, a.length));
      }
      if (typeof a !== "string" || !/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(a)) {
        return Promise.reject(new InvalidArgumentError(`bad address "${a}"`));
      }
    }
    return this.run(async () => {
      this.requireLeader();
      const known = this.members().find((x) => x.id === m.id);
      if (known) {
        // Idempotent: the same member again (a retried request) succeeds; another one fails.
        const same = known.peer === m.peer && known.client === m.client && known.http === m.http;
        if (!same) {
          throw new InvalidArgumentError(`node ${m.id} is already a member with other addresses`);
        }
        // A voter: done. A learner: ask again below, which (re)starts its promotion.
        if (!known.learner) return;
      }
      let settled = false;
      let failure: unknown;
      this.o.raft.addMember(m.id, encodeMemberContext(m), { timeoutMs: 10 * 60_000 }).then(
        () => {
          settled = true;
          this.o.logger?.info("member promoted to voter", { node: m.id });
        },
        (e) => {
          settled = true;
          failure = e;
          this.o.logger?.warn("adding member failed", { node: m.id, error: (e as Error).message });
        },
      );
      const deadline = Date.now() + Math.max(this.timeoutMs, 20_000);
      while (true) {
        if (failure !== undefined) throw failure;
        if (settled || this.members().some((x) => x.id === m.id)) return;
        if (Date.now() > deadline) {
          throw new TimeoutError(
            `adding member ${m.id} timed out`,
            Math.max(this.timeoutMs, 20_000),
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    });
  }

  /** Removes a member; {@link NotFoundError} if it is not one. */
  removeMember(id: number): Promise<void> {
    return this.run(async () => {
      if (!this.members().some((x) => x.id === id)) throw new NotFoundError(`member ${id}`);
      this.requireLeader();
      await this.o.raft.removeMember(id, { timeoutMs: Math.max(this.timeoutMs, 10_000) });
    });
  }

  /** Transfers leadership to `id`; succeeds at once when `id` already leads (idempotent). */
  transferLeader(id: number): Promise<void> {
    return this.run(async () => {
      const m = this.members().find((x) => x.id === id);
      if (!m) throw new NotFoundError(`member ${id}`);
      if (m.learner) throw new InvalidArgumentError(`node ${id} is a learner`);
      if (id === this.o.id && this.isLeader()) return;
      this.requireLeader();
      await this.o.raft.transferLeader(id, { timeoutMs: Math.max(this.timeoutMs, 5_000) });
    });
  }

  /** The node's status (GET /v1/status). */
  status(): Record<string, unknown> {
    const s = this.o.raft.status();
    const learner = s.conf.learners.includes(this.o.id) ||
      s.conf.learnersNext.includes(this.o.id);
    let storage: Record<string, unknown> = {};
    try {
      storage = this.o.sm.stats();
    } catch (e) {
      storage = { error: (e as Error).message };
    }
    return {
      id: this.o.id,
      role: roleName(s.role, learner),
      state: String(s.role),
      term: s.term,
      leader: s.lead,
      commitIndex: s.commit,
      appliedIndex: s.applied,
      snapshotIndex: s.snapshotIndex,
      logSize: s.logSize,
      conf: s.conf,
      storage,
      ...this.o.statusExtra?.(),
    };
  }
}

/** The keys an atomic operation touches, for authorization (server/auth.ts `KeyScope`): every
 * check's and mutation's key; a versionstamp-suffixed key as the range of its prefix. */
export function atomicScope(op: AtomicOperation): (Uint8Array | { prefix: Uint8Array })[] {
  return [
    ...op.checks.map((c) => c.key),
    ...op.mutations.map((m) => m.type === "setSuffixVersionstampedKey" ? { prefix: m.key } : m.key),
  ];
}

/** The keys a watch selects, for authorization: its keys and its prefixes as ranges. */
export function watchScope(sel: WatchSelector): (Uint8Array | { prefix: Uint8Array })[] {
  return [...sel.keys, ...sel.prefixes.map((prefix) => ({ prefix }))];
}

/** The versionstamp of an apply result, if it carries one. */
function versionstampOf(r: unknown): Uint8Array | undefined {
  const vs = (r as { versionstamp?: unknown } | null)?.versionstamp;
  return vs instanceof Uint8Array ? vs : undefined;
}

/** Checks an atomic operation before it is proposed (see {@link KvService.atomic}): the one
 * place the `atomic_*` limits are checked. */
export function validateAtomic(
  checks: AtomicCheck[],
  mutations: AtomicMutation[],
  limits: AtomicLimits,
): void {
  if (!Array.isArray(checks) || !Array.isArray(mutations)) {
    throw new InvalidArgumentError("an atomic operation has a list of checks and of mutations");
  }
  checkAtomicLimits({ checks, mutations }, limits);
  checks.forEach((c, i) => {
    if (!(c.key instanceof Uint8Array) || c.key.length === 0) {
      throw new InvalidArgumentError(`check ${i}: empty key`);
    }
    if (c.versionstamp !== null && c.versionstamp.length !== VERSIONSTAMP_BYTES) {
      throw new InvalidArgumentError(`check ${i}: a versionstamp has ${VERSIONSTAMP_BYTES} bytes`);
    }
  });
  mutations.forEach((m, i) => {
    const what = `mutation ${i} (${m.type})`;
    if (!(m.key instanceof Uint8Array)) throw new InvalidArgumentError(`${what}: no key`);
    if (m.key.length === 0 && m.type !== "setSuffixVersionstampedKey") {
      throw new InvalidArgumentError(`${what}: empty key`);
    }
    switch (m.type) {
      case "set":
      case "setSuffixVersionstampedKey":
        if (!isValueEncoding(m.encoding)) {
          throw new InvalidArgumentError(`${what}: unknown value encoding ${m.encoding}`);
        }
        if (m.encoding === ValueEncoding.LE64 && m.value.length !== 8) {
          throw new InvalidArgumentError(`${what}: an LE64 value has 8 bytes`);
        }
        if (
          m.expireAt !== undefined && (!Number.isSafeInteger(m.expireAt) || m.expireAt < 0)
        ) {
          throw new InvalidArgumentError(`${what}: bad expiry time ${m.expireAt}`);
        }
        break;
      case "delete":
        break;
      case "sum":
      case "min":
      case "max":
        if (m.type === "sum" && m.encoding !== undefined && m.encoding !== ValueEncoding.LE64) {
          if (m.encoding !== ValueEncoding.V8) {
            throw new InvalidArgumentError(`${what}: a sum operand is LE64 or V8`);
          }
          for (const b of [m.value, m.min, m.max]) {
            if (b !== undefined && !(b instanceof Uint8Array)) {
              throw new InvalidArgumentError(`${what}: a V8 operand is bytes`);
            }
          }
          // denokv's messages (a type error of the data model: nothing is proposed).
          const problem = v8SumParameterProblem(m.value, m.min, m.max);
          if (problem !== undefined) throw new MutationTypeError(problem);
          break;
        }
        for (const b of [m.value, ...(m.type === "sum" ? [m.min, m.max] : [])]) {
          if (b !== undefined && (!(b instanceof Uint8Array) || b.length !== 8)) {
            throw new InvalidArgumentError(`${what}: a u64 operand has 8 bytes`);
          }
        }
        break;
      default:
        throw new InvalidArgumentError(
          `mutation ${i}: unknown type ${(m as { type: unknown }).type}`,
        );
    }
  });
}

/** An empty key is an invalid argument; a long one a {@link LimitError}. */
function checkKeyArg(key: Uint8Array): void {
  if (key.length === 0) throw new InvalidArgumentError("empty key");
  checkKey(key);
}
