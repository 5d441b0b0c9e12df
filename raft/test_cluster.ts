/**
 * A deterministic in-process cluster of {@link RawNode}s for the raft unit tests and the
 * benchmark: synchronous in-memory storage, a message queue with drop/partition filters, and a
 * trivial state machine recording applied entries. Not used in production.
 *
 * @module
 */
import { MemoryLogStore } from "./memory_log_store.ts";
import { type RaftConfig, RawNode, type ReadState, type Ready } from "./raw_node.ts";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  type NodeId,
} from "./types.ts";

/** A seeded PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One member of a {@link TestCluster}. */
export interface TestMember {
  id: NodeId;
  rn: RawNode;
  store: MemoryLogStore;
  /** Applied normal entries with data (no-ops skipped). */
  applied: Entry[];
  appliedIndex: number;
  readStates: ReadState[];
  confChanges: { cc: ConfChange; conf: ConfState; index: number }[];
  /** Snapshot data restored, if any. */
  restoredSnapshots: number[];
  config: RaftConfig;
}

/** Options for a test cluster. */
export interface TestClusterOptions {
  preVote?: boolean;
  checkQuorum?: boolean;
  leaseRead?: boolean;
  electionTick?: number;
  heartbeatTick?: number;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  snapshotChunkBytes?: number;
  /** Virtual milliseconds per tick (default 10): {@link TestCluster.now} advances by it. */
  tickMs?: number;
  seed?: number;
  /** Keep a durable copy per sync so crash() works (default true). */
  crashable?: boolean;
  /** Record applied entries in {@link TestMember.applied} (default true). */
  recordApplied?: boolean;
}

/** A deterministic cluster driven by explicit ticks and message delivery. */
export class TestCluster {
  members = new Map<NodeId, TestMember>();
  queue: Message[] = [];
  /** Return false to drop a message. */
  filter: ((m: Message) => boolean) | null = null;
  private cut = new Set<string>();
  readonly opts: TestClusterOptions;
  private rnd: () => number;
  delivered = 0;
  /** Virtual monotonic time in ms, passed to every tick and step (lease reads). */
  now = 0;

  constructor(voters: NodeId[], opts: TestClusterOptions = {}) {
    this.opts = opts;
    this.rnd = seededRandom(opts.seed ?? 1);
    for (const id of voters) this.addMember(id, voters);
  }

  /** Creates a member; bootstrapped with `bootstrapVoters` when given, else empty (joiner). */
  addMember(id: NodeId, bootstrapVoters: NodeId[] | null, store?: MemoryLogStore): TestMember {
    const o = this.opts;
    const s = store ?? new MemoryLogStore(o.crashable ?? true);
    if (bootstrapVoters && !store) {
      RawNode.bootstrap(s, bootstrapVoters);
      s.syncNow();
    }
    const config: RaftConfig = {
      id,
      electionTick: o.electionTick ?? 10,
      heartbeatTick: o.heartbeatTick ?? 1,
      preVote: o.preVote ?? false,
      checkQuorum: o.checkQuorum ?? false,
      leaseRead: o.leaseRead ?? false,
      maxSizePerMsg: o.maxSizePerMsg ?? 1 << 20,
      maxInflightMsgs: o.maxInflightMsgs ?? 256,
      maxInflightBytes: o.maxInflightBytes ?? 0,
      snapshotChunkBytes: o.snapshotChunkBytes,
      tickMs: o.tickMs ?? 10,
      random: this.rnd,
      applied: s.snapshotMeta().index,
    };
    const m: TestMember = {
      id,
      rn: new RawNode(config, s),
      store: s,
      applied: [],
      appliedIndex: s.snapshotMeta().index,
      readStates: [],
      confChanges: [],
      restoredSnapshots: [],
      config,
    };
    this.members.set(id, m);
    return m;
  }

  /** Simulates a crash and restart of `id`: unsynced state is lost, the state machine rebuilt. */
  restart(id: NodeId): TestMember {
    const old = this.members.get(id)!;
    const s = old.store.crash();
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
    return this.addMember(id, null, s);
  }

  /** Removes a member from the network entirely. */
  remove(id: NodeId): void {
    this.members.delete(id);
  }

  get(id: NodeId): TestMember {
    const m = this.members.get(id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  /** Cuts the links between `a` and `b` in both directions. */
  cutLink(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}-${b}`);
    this.cut.add(`${b}-${a}`);
  }

  /** Isolates `id` from every other member. */
  isolate(id: NodeId): void {
    for (const other of this.members.keys()) if (other !== id) this.cutLink(id, other);
  }

  /** Restores every link. */
  heal(): void {
    this.cut.clear();
  }

  /** Processes one Ready of a member (persist, apply, queue messages). */
  handleReady(m: TestMember, rd: Ready): void {
    for (const msg of rd.messages) this.queue.push(msg);
    if (rd.snapshot) {
      m.store.applySnapshot(rd.snapshot);
      m.appliedIndex = rd.snapshot.meta.index;
      m.restoredSnapshots.push(rd.snapshot.meta.index);
    }
    if (rd.entries.length) m.store.append(rd.entries);
    if (rd.hardState) m.store.setHardState(rd.hardState);
    if (rd.hardState || rd.entries.length || rd.snapshot) m.store.syncNow();
    for (const msg of rd.persistedMessages) this.queue.push(msg);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) {
        const r = m.rn.applyConfChangeEntry(e);
        if (r) m.confChanges.push({ ...r, index: e.index });
      } else if (e.data.length > 0 && this.opts.recordApplied !== false) {
        m.applied.push(e);
      }
      m.appliedIndex = e.index;
    }
    for (const rs of rd.readStates) m.readStates.push(rs);
    m.rn.advance(rd);
  }

  /** Runs every member's Ready loop once; returns whether anything happened. */
  processReadies(): boolean {
    let any = false;
    for (const m of this.members.values()) {
      while (m.rn.hasReady()) {
        any = true;
        this.handleReady(m, m.rn.ready());
      }
    }
    return any;
  }

  /** Delivers queued messages (respecting cuts and the filter); returns how many. */
  deliver(): number {
    const q = this.queue;
    this.queue = [];
    let n = 0;
    for (const msg of q) {
      if (this.cut.has(`${msg.from}-${msg.to}`)) continue;
      if (this.filter && !this.filter(msg)) continue;
      const m = this.members.get(msg.to);
      if (!m) continue;
      m.rn.step(msg, this.now);
      n++;
    }
    this.delivered += n;
    return n;
  }

  /** Processes Readys and messages until quiescent (bounded). */
  stabilize(maxRounds = 10000): void {
    for (let i = 0; i < maxRounds; i++) {
      const a = this.processReadies();
      const n = this.deliver();
      if (!a && n === 0 && this.queue.length === 0) return;
    }
    throw new Error("cluster did not stabilize");
  }

  /** Ticks every member `n` times, stabilizing after each tick. */
  tick(n = 1): void {
    for (let i = 0; i < n; i++) {
      this.now += this.opts.tickMs ?? 10;
      for (const m of this.members.values()) m.rn.tick(this.now);
      this.stabilize();
    }
  }

  /** Ticks until a single leader among `ids` (default all) is known; returns its id. */
  waitLeader(maxTicks = 500, ids?: NodeId[]): NodeId {
    for (let i = 0; i < maxTicks; i++) {
      const l = this.leader(ids);
      if (l) return l;
      this.tick();
    }
    throw new Error("no leader elected");
  }

  /** The unique leader of the highest term among `ids`, or 0. */
  leader(ids?: NodeId[]): NodeId {
    let best = 0;
    let bestTerm = -1;
    for (const m of this.members.values()) {
      if (ids && !ids.includes(m.id)) continue;
      const r = m.rn.raft;
      if (r.role === "leader" && r.term > bestTerm) {
        best = m.id;
        bestTerm = r.term;
      }
    }
    return best;
  }

  /** Elects `id` by forcing a campaign (ticking until it is leader). */
  elect(id: NodeId): void {
    this.stabilize();
    this.get(id).rn.campaign();
    this.stabilize();
    if (this.get(id).rn.raft.role !== "leader") throw new Error(`${id} did not win`);
  }

  /** Proposes `data` on `id` and stabilizes; returns the entry index. */
  propose(id: NodeId, data: string | Uint8Array): number {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const r = this.get(id).rn.propose(bytes);
    this.stabilize();
    return r.index;
  }

  /** Applied data of a member, decoded as strings. */
  appliedData(id: NodeId): string[] {
    const d = new TextDecoder();
    return this.get(id).applied.map((e) => d.decode(e.data));
  }
}
