/**
 * Simulated clients: each issues one operation at a time (put, delete, get or compare-and-set on
 * a few shared keys; atomic multi-key puts and reads on groups of keys) and records it in a
 * history for the linearizability checker. Writes carry a session as the real client library's
 * do (client/client.ts): a client first registers one (a command in the log; the session id is
 * its log index), each write carries (session, seq) and is retried with the same seq after a
 * timeout, a lost leadership or a crashed server, so it applies at most once. A write refused
 * because its session expired (or was evicted from the bounded table) is retried once under a
 * new session when no earlier attempt may have applied it; otherwise it completes as "not
 * applied" (no earlier attempt can have applied it) or with an unknown outcome. Commands carry
 * the proposing node's clock reading (the state machine's clock). Gets use ReadIndex, at the
 * leader or at a follower. A client that runs out of attempts gives up: a write's outcome is then
 * unknown (return time infinity).
 *
 * @module
 */
import { NotLeaderError } from "../errors.ts";
import type { KvInput, KvOperation } from "../linearizability.ts";
import type { Entry, NodeId } from "../types.ts";
import type { SimCluster, SimNode } from "./cluster.ts";
import { encodeCommand, type KvApplyResult, registerCommand } from "./kv.ts";

/** Tunables of the workload. */
export interface WorkloadOptions {
  /** Number of clients (ids 1..n). */
  clients: number;
  /** Keys used ("k0".."k{n-1}"). */
  keys: number;
  /** Per-step probability that an idle client starts an operation. */
  rate: number;
  /** Steps a client waits for an answer before retrying. */
  timeout: number;
  /** Attempts before a client gives up on an operation. */
  maxAttempts: number;
  /** Share of operations that are gets. */
  readShare: number;
  /** Share of writes that are deletes. */
  deleteShare: number;
  /** Share of single-key writes that are compare-and-sets (default 0). */
  casShare?: number;
  /** Share of operations on key groups: atomic multi-key puts and reads (default 0). */
  multiShare?: number;
  /** Fault injection for testing the simulator itself: serve gets from the contacted node's
   * local state without ReadIndex (stale reads). */
  unsafeLocalReads?: boolean;
  /** Idle time (steps of the state machine's clock) after which a session expires (default:
   * never within a run). */
  sessionIdle?: number;
  /** Bound of the session table (default 1000). */
  maxSessions?: number;
  /** Share of writes a client issues under a fresh session (a CLI call: default 0). */
  freshSessionShare?: number;
}

interface InFlight {
  hist: number;
  input: KvInput;
  seq: number;
  attempts: number;
  /** Node holding the attempt, 0 when none is in flight. */
  target: NodeId;
  deadline: number;
  retryAt: number;
  /** For writes: where the proposal landed. */
  index: number;
  term: number;
  /** For gets: the read's key at the node. */
  readKey: string;
  /** The attempt in flight is a registration for this write. */
  registering: boolean;
  /** An earlier attempt under the current session may have applied the write. */
  uncertain: boolean;
  /** The write was already retried under a new session once. */
  renewed: boolean;
}

interface Client {
  id: number;
  /** The session id (0: none registered yet). */
  session: number;
  seq: number;
  leaderHint: NodeId;
  op: InFlight | null;
}

/** Counters for reports. */
export interface WorkloadStats {
  started: number;
  completed: number;
  gaveUp: number;
  retries: number;
  /** Sessions registered. */
  registrations: number;
  /** Writes refused because their session expired. */
  expired: number;
  /** Writes that completed as "not applied". */
  notApplied: number;
}

/** Clients driving a {@link SimCluster} and recording a history. */
export class Workload {
  readonly #cluster: SimCluster;
  readonly #opts: WorkloadOptions;
  readonly #clients: Client[] = [];
  /** The recorded history (logical times). */
  readonly history: KvOperation[] = [];
  /** When false, idle clients start nothing new. */
  issuing = true;
  /** Counters. */
  readonly stats: WorkloadStats = {
    started: 0,
    completed: 0,
    gaveUp: 0,
    retries: 0,
    registrations: 0,
    expired: 0,
    notApplied: 0,
  };
  #clock = 0;
  #reads = 0;
  #value = 0;
  /** The last value written per key (what a compare-and-set expects, often right). */
  readonly #lastWritten = new Map<string, string | null>();

  /** Creates clients and hooks them to the cluster's listener. */
  constructor(cluster: SimCluster, opts: WorkloadOptions) {
    this.#cluster = cluster;
    this.#opts = opts;
    for (let i = 1; i <= opts.clients; i++) {
      this.#clients.push({ id: i, session: 0, seq: 0, leaderHint: 0, op: null });
    }
    const prev = cluster.listener;
    cluster.listener = {
      ...prev,
      onApply: (node, entry, result) => {
        prev.onApply?.(node, entry, result);
        this.#onApply(node, entry, result);
      },
      onRead: (node, key) => {
        prev.onRead?.(node, key);
        this.#onRead(node, key);
      },
      onDown: (node) => {
        prev.onDown?.(node);
        this.#onDown(node);
      },
    };
  }

  /** True when no client has an operation in progress. */
  idle(): boolean {
    return this.#clients.every((c) => c.op === null);
  }

  /** Starts `input` on client `clientId` now (it must be idle). */
  start(clientId: number, input: KvInput): void {
    const c = this.#clients[clientId - 1];
    if (c.op) throw new RangeError(`client ${clientId} is busy`);
    const hist = this.history.length;
    this.history.push({ client: c.id, call: ++this.#clock, ret: Infinity, input });
    const write = input.kind !== "get" && input.kind !== "mget";
    if (write && this.#cluster.rng.chance(this.#opts.freshSessionShare ?? 0)) c.session = 0;
    c.op = {
      hist,
      input,
      seq: write && c.session !== 0 ? ++c.seq : 0,
      attempts: 0,
      target: 0,
      deadline: 0,
      retryAt: this.#cluster.now,
      index: 0,
      term: 0,
      readKey: "",
      registering: false,
      uncertain: false,
      renewed: false,
    };
    this.stats.started++;
    this.#attempt(c);
  }

  /** Drives the clients for the current step (call once per step, before `cluster.step()`). */
  tick(): void {
    const cl = this.#cluster;
    const rng = cl.rng;
    for (const c of this.#clients) {
      const op = c.op;
      if (op === null) {
        if (this.issuing && rng.chance(this.#opts.rate)) this.start(c.id, this.#randomInput(c));
        continue;
      }
      if (op.target !== 0 && cl.now >= op.deadline) {
        this.#abandonAttempt(c, rng.int(3));
      }
      if (op.target === 0 && cl.now >= op.retryAt) this.#attempt(c);
    }
  }

  #randomInput(c: Client): KvInput {
    const rng = this.#cluster.rng;
    if (rng.chance(this.#opts.multiShare ?? 0)) {
      const group = "g" + rng.int(2);
      const keys = [`${group}.a`, `${group}.b`, `${group}.c`];
      if (rng.chance(this.#opts.readShare)) return { kind: "mget", key: group, keys };
      const v = `${c.id}.${++this.#value}`;
      return { kind: "mput", key: group, keys, values: keys.map((k) => `${v}${k.slice(-1)}`) };
    }
    const key = "k" + rng.int(this.#opts.keys);
    if (rng.chance(this.#opts.readShare)) return { kind: "get", key };
    if (rng.chance(this.#opts.deleteShare)) {
      this.#lastWritten.set(key, null);
      return { kind: "delete", key };
    }
    const value = `${c.id}.${++this.#value}`;
    if (rng.chance(this.#opts.casShare ?? 0)) {
      const expected = rng.chance(0.8) ? this.#lastWritten.get(key) ?? null : `${c.id}.0`;
      this.#lastWritten.set(key, value);
      return { kind: "cas", key, expected, value };
    }
    this.#lastWritten.set(key, value);
    return { kind: "put", key, value };
  }

  #pickTarget(c: Client, preferLeader: boolean): NodeId {
    const cl = this.#cluster;
    const members = cl.memberIds();
    if (preferLeader && c.leaderHint !== 0 && cl.nodes.get(c.leaderHint)?.stopped === false) {
      return c.leaderHint;
    }
    return cl.rng.pick(members);
  }

  #attempt(c: Client): void {
    const op = c.op!;
    const cl = this.#cluster;
    if (op.attempts >= this.#opts.maxAttempts) {
      this.#giveUp(c);
      return;
    }
    const isRead = op.input.kind === "get" || op.input.kind === "mget";
    const target = this.#pickTarget(c, !isRead || cl.rng.chance(0.5));
    const node = cl.nodes.get(target);
    if (!node?.raw) {
      // Connection refused: try elsewhere soon.
      c.leaderHint = 0;
      op.retryAt = cl.now + 1;
      return;
    }
    // Only attempts that reached a server count; refusals are retried without limit.
    if (isRead) {
      op.attempts++;
      if (op.attempts > 1) this.stats.retries++;
      if (this.#opts.unsafeLocalReads) {
        this.#complete(c, this.#read(node, op.input));
        return;
      }
      op.readKey = `r${++this.#reads}`;
      op.target = target;
      op.deadline = cl.now + this.#opts.timeout;
      cl.readIndex(target, op.readKey);
      return;
    }
    const input = op.input as Exclude<KvInput, { kind: "get" | "mget" }>;
    // The proposing node stamps the command with its clock (one step = one unit).
    const time = cl.now + 1;
    op.registering = c.session === 0;
    const data = op.registering
      ? registerCommand(this.#opts.sessionIdle ?? 1e9, this.#opts.maxSessions ?? 1000, time)
      : encodeCommand({
        kind: input.kind,
        session: { id: c.session, seq: op.seq },
        time,
        key: input.key,
        value: input.kind === "put"
          ? input.value
          : input.kind === "cas"
          ? JSON.stringify({ expected: input.expected, value: input.value })
          : input.kind === "mput"
          ? JSON.stringify({ keys: input.keys, values: input.values })
          : "",
      });
    try {
      const r = node.raw.propose(data);
      op.attempts++;
      if (op.attempts > 1) this.stats.retries++;
      op.index = r.index;
      op.term = r.term;
      op.target = target;
      op.deadline = cl.now + this.#opts.timeout;
      c.leaderHint = target;
    } catch (e) {
      c.leaderHint = e instanceof NotLeaderError ? e.leaderId : 0;
      op.retryAt = cl.now + 1 + cl.rng.int(3);
    }
  }

  /** Gives up the attempt in flight; `certain` when it is known not to have applied (another
   * entry took its place). */
  #abandonAttempt(c: Client, backoff: number, certain = false): void {
    const op = c.op!;
    if (op.readKey) this.#cluster.dropRead(op.target, op.readKey);
    if (op.target !== 0 && !op.readKey && !op.registering && !certain) op.uncertain = true;
    op.target = 0;
    op.readKey = "";
    op.retryAt = this.#cluster.now + backoff;
    c.leaderHint = 0;
  }

  #giveUp(c: Client): void {
    // The history keeps ret = Infinity: a write may or may not have happened.
    c.op = null;
    this.stats.gaveUp++;
  }

  #complete(c: Client, output: string | null | undefined, notApplied = false): void {
    const op = c.op!;
    const h = this.history[op.hist];
    h.ret = ++this.#clock;
    if (notApplied) {
      h.notApplied = true;
      this.stats.notApplied++;
    }
    if (op.input.kind === "get" || op.input.kind === "cas" || op.input.kind === "mget") {
      h.output = output ?? null;
    }
    c.op = null;
    this.stats.completed++;
  }

  #onApply(node: SimNode, entry: Entry, result: KvApplyResult): void {
    for (const c of this.#clients) {
      const op = c.op;
      if (
        !op || op.target !== node.id || op.input.kind === "get" || op.input.kind === "mget" ||
        op.index !== entry.index
      ) {
        continue;
      }
      if (entry.term !== op.term) {
        this.#abandonAttempt(c, 0, true); // overwritten by another leader: retry
      } else if (op.registering) {
        // The session id is the registration's log index; the write goes next.
        this.stats.registrations++;
        c.session = result.sessionId!;
        c.seq = 0;
        op.seq = ++c.seq;
        op.registering = false;
        op.uncertain = false;
        op.target = 0;
        op.attempts = 0;
        op.retryAt = this.#cluster.now;
      } else if (result.ok) {
        this.#complete(c, op.input.kind === "cas" ? (result.swapped ? "ok" : "fail") : undefined);
      } else if (result.error === "session_expired") {
        this.stats.expired++;
        c.session = 0;
        if (op.uncertain) {
          // An earlier attempt may have applied it: the outcome is unknown.
          c.op = null;
          this.stats.gaveUp++;
        } else if (op.renewed) this.#complete(c, undefined, true);
        else {
          // Nothing applied it: retry once under a new session (registered first).
          op.renewed = true;
          op.target = 0;
          op.retryAt = this.#cluster.now;
        }
      } else {
        // A refused seq: nothing changed (the client library reports an invalid argument).
        this.#complete(c, undefined, true);
      }
    }
  }

  /** What a read returns from `node`'s state now. */
  #read(node: SimNode, input: KvInput): string | null {
    if (input.kind === "mget") return JSON.stringify(input.keys.map((k) => node.kv.get(k)));
    return node.kv.get(input.key);
  }

  #onRead(node: SimNode, key: string): void {
    for (const c of this.#clients) {
      const op = c.op;
      if (
        op && op.readKey === key && op.target === node.id &&
        (op.input.kind === "get" || op.input.kind === "mget")
      ) {
        this.#complete(c, this.#read(node, op.input));
      }
    }
  }

  #onDown(node: SimNode): void {
    for (const c of this.#clients) {
      if (c.op && c.op.target === node.id) this.#abandonAttempt(c, 1);
    }
  }

  /** Makes every client give up its current operation (end of run). */
  abandonAll(): void {
    for (const c of this.#clients) {
      if (!c.op) continue;
      if (c.op.target !== 0) this.#abandonAttempt(c, 0);
      this.#giveUp(c);
    }
  }
}
