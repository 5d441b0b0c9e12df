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
  deleteCommand,
  encodeCommand,
  putCommand,
  registerSessionCommand,
} from "../storage/command.ts";
import type { KvStateMachine } from "../storage/kv_state_machine.ts";
import { compareBytes } from "../storage/bytes.ts";
import {
  GokvError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  NotLeaderError,
  SessionExpiredError,
  TimeoutError,
  UnavailableError,
} from "../client/errors.ts";
import type { MemberInfo, ScanRange } from "../client/protocol.ts";
import {
  checkKey,
  checkValue,
  defaultNodeLimits,
  LimitError,
  MAX_ADDRESS_BYTES,
  MAX_KEY_BYTES,
  MAX_SCAN_PAGE_PAIRS,
  type NodeLimits,
} from "../config/limits.ts";
import { type AddressBook, encodeMemberContext, type MemberAddrs } from "./members.ts";
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
  /** Proposes a command; resolves with the state machine's apply result. */
  propose(data: Uint8Array, opts?: { timeoutMs?: number }): Promise<unknown>;
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
}

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

  /** Creates the service. */
  constructor(private readonly o: ServiceOptions) {
    this.timeoutMs = o.requestTimeoutMs ?? 2_500;
    this.limits = o.limits ?? defaultNodeLimits();
  }

  /** This node's id. */
  get id(): number {
    return this.o.id;
  }

  /** Stops accepting new requests (they fail with {@link UnavailableError}). */
  stopAccepting(): void {
    this.closing = true;
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

  /** Proposes a command; resolves with its apply result, throws the typed error of a refusal. */
  private async propose(data: Uint8Array): Promise<unknown> {
    this.o.metrics.proposals.inc();
    let result: unknown;
    try {
      result = await this.o.raft.propose(data, { timeoutMs: this.timeoutMs });
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

  /** Writes `value` at `key` (exactly once per session seq; without a session: proposed once, at
   * most once). A key or value over its limit (config/limits.ts) is refused with
   * {@link LimitError} before anything is proposed; an unknown or expired session is refused with
   * {@link SessionExpiredError}. */
  put(key: Uint8Array, value: Uint8Array, session?: WriteSession): Promise<void> {
    try {
      checkKeyArg(key);
      checkValue(value);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      this.checkSession(session);
      await this.propose(encodeCommand(putCommand(key, value, session, this.now())));
    });
  }

  /** Deletes `key` (exactly once per session seq; see {@link put}); the key limit applies as for
   * put. */
  delete(key: Uint8Array, session?: WriteSession): Promise<void> {
    try {
      checkKeyArg(key);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(async () => {
      this.checkSession(session);
      await this.propose(encodeCommand(deleteCommand(key, session, this.now())));
    });
  }

  private async barrier(linearizable: boolean): Promise<void> {
    if (!linearizable) return;
    const t0 = performance.now();
    await this.o.raft.readIndex({ timeoutMs: this.timeoutMs });
    this.o.metrics.readIndexSeconds.observe((performance.now() - t0) / 1000);
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
    for (const b of [range.start, range.end, range.prefix, range.cursor]) {
      if (b && b.length > MAX_KEY_BYTES) {
        return Promise.reject(new LimitError("key_bytes", MAX_KEY_BYTES, b.length));
      }
    }
    const pagePairs = Math.min(range.limit || this.limits.scanPagePairs, MAX_SCAN_PAGE_PAIRS);
    const budget = this.limits.scanPageBytes;
    let start = range.start;
    if (range.cursor) {
      // The smallest key after the cursor: the cursor followed by a zero byte.
      const after = new Uint8Array(range.cursor.length + 1);
      after.set(range.cursor);
      if (!start || compareBytes(after, start) > 0) start = after;
    }
    return this.run(async () => {
      await this.barrier(linearizable);
      this.o.metrics.reads.inc();
      const got = await this.o.sm.scan({
        start,
        end: range.end,
        prefix: range.prefix,
        limit: pagePairs + 1,
        maxBytes: budget,
      });
      // Keep pairs within the budget (at least one) and the page size; anything read beyond
      // them proves that another page follows.
      let kept = 0;
      let bytes = 0;
      for (const [k, v] of got) {
        if (kept === pagePairs || (kept > 0 && bytes + k.length + v.length > budget)) break;
        bytes += k.length + v.length;
        kept++;
      }
      const pairs = got.slice(0, kept);
      // A lone pair over the budget stops the state machine's scan too: more may follow.
      const more = kept < got.length || (kept === 1 && bytes > budget);
      return more && kept > 0 ? { pairs, next: pairs[kept - 1][0] } : { pairs };
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

/** An empty key is an invalid argument; a long one a {@link LimitError}. */
function checkKeyArg(key: Uint8Array): void {
  if (key.length === 0) throw new InvalidArgumentError("empty key");
  checkKey(key);
}
