/**
 * A simulated Raft cluster: {@link RawNode}s over a {@link SimNetwork}, each with a
 * {@link SimLogStore} and a {@link SimKv}, driven one step at a time by a single thread. A step
 * delivers the messages due, ticks every running node and handles every Ready following the
 * driver contract (send, persist, sync, send persisted messages, apply, reads, advance,
 * snapshot). After each step the {@link InvariantChecker} checks the Raft safety properties.
 *
 * Everything random comes from one seeded {@link Prng}: a seed replays a run exactly.
 *
 * @module
 */
import { decodeConfChange } from "../confchange_codec.ts";
import { type Logger, nullLogger } from "../logger.ts";
import { type RaftConfig, RawNode, type Ready } from "../raw_node.ts";
import {
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
} from "../types.ts";
import { InvariantChecker, InvariantViolation } from "./invariants.ts";
import { type KvApplyResult, SimKv } from "./kv.ts";
import { type NetworkFaults, RELIABLE, SimNetwork } from "./network.ts";
import { Prng } from "./prng.ts";
import { SimLogStore } from "./sim_log_store.ts";

/** Tunables of a simulated cluster. */
export interface ClusterOptions {
  /** The seed of every random choice. */
  seed: number;
  /** The initial voters (bootstrapped). */
  voters: NodeId[];
  /** Election timeout in ticks (default 10). */
  electionTick?: number;
  /** Heartbeat interval in ticks (default 1). */
  heartbeatTick?: number;
  /** Pre-Vote (default true). */
  preVote?: boolean;
  /** CheckQuorum (default true). */
  checkQuorum?: boolean;
  /** Max bytes of entries per append message (default 256). */
  maxSizePerMsg?: number;
  /** Max append messages in flight per follower (default 8). */
  maxInflightMsgs?: number;
  /** Snapshot chunk size in bytes (default 64, so snapshots span several chunks). */
  snapshotChunkBytes?: number;
  /** Take a snapshot when this many entries were applied since the last (default: never). */
  snapshotThreshold?: number;
  /** The network's faults (default reliable). */
  faults?: NetworkFaults;
  /** Probability that a node crashes while handling a Ready, after sending its messages and
   * writing but before syncing (default 0). */
  crashDuringReadyRate?: number;
  /** Probability that a node misses a tick (clock drift; default 0). */
  tickSkipRate?: number;
  /** Serve ReadIndex from the leader lease (default false). */
  leaseRead?: boolean;
  /** Do not sync a Ready whose only durable change is the commit index, as the production
   * driver does (default false: sync every Ready). */
  lazyCommitSync?: boolean;
  /** The state machine survives crashes at its applied index, like a disk-backed one; the node
   * restarts with that applied index instead of its snapshot's (default false). */
  durableStateMachine?: boolean;
  /** A logger for the nodes (default silent). */
  logger?: Logger;
}

/** A read waiting at a node: first for its read index, then for the node to apply it. */
interface PendingRead {
  key: string;
  index: number;
}

/** One simulated server. */
export class SimNode {
  /** The node id. */
  readonly id: NodeId;
  /** Its log store (survives crashes; unsynced writes do not). */
  readonly store: SimLogStore;
  /** The Raft node, or null while crashed or after being stopped. */
  raw: RawNode | null = null;
  /** Its state machine (rebuilt from the durable snapshot on restart). */
  kv: SimKv = new SimKv();
  /** The configuration as of the last applied entry. */
  conf: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [] };
  /** True once the node has been removed from the cluster and shut down for good. */
  stopped = false;
  /** Reads waiting for the node's apply to reach their read index. */
  reads: PendingRead[] = [];
  /** Term of the last leadership checked for completeness (0 = not leader). */
  leaderTerm = 0;
  /** Term and vote as of the last sync (lazy commit syncing skips commit-only changes). */
  syncedTerm = 0;
  syncedVote = 0;
  /** Extra probability of missing a tick: this node's clock runs slow. */
  clockDrift = 0;
  /** Its private random stream (Raft's randomized election timeout). */
  readonly rng: Prng;

  /** Creates a stopped node over `store`. */
  constructor(id: NodeId, store: SimLogStore, rng: Prng) {
    this.id = id;
    this.store = store;
    this.rng = rng;
  }

  /** True while running. */
  get up(): boolean {
    return this.raw !== null;
  }
}

/** Callbacks for the workload above the cluster. */
export interface ClusterListener {
  /** `node` applied a normal entry. */
  onApply?(node: SimNode, entry: Entry, result: KvApplyResult): void;
  /** `node` applied a conf-change entry. */
  onConfChange?(node: SimNode, entry: Entry, conf: ConfState): void;
  /** A read registered with {@link SimCluster.readIndex} can be served from `node.kv` now. */
  onRead?(node: SimNode, key: string): void;
  /** `node` lost its volatile state (crash or stop). */
  onDown?(node: SimNode): void;
}

/** A deterministic simulated cluster. */
export class SimCluster {
  /** The run's random stream. */
  readonly rng: Prng;
  /** The network. */
  readonly net: SimNetwork;
  /** The safety checker. */
  readonly checker = new InvariantChecker();
  /** Every node ever created, by id (stopped ones included). */
  readonly nodes = new Map<NodeId, SimNode>();
  /** The current step. */
  now = 0;
  /** Listeners notified of applies and reads. */
  listener: ClusterListener = {};
  /** Snapshot threshold (entries applied since the last snapshot). */
  snapshotThreshold: number;
  /** Crash-while-handling-Ready probability. */
  crashDuringReadyRate: number;
  /** Tick-skip probability. */
  tickSkipRate: number;
  /** Fault injection for testing the simulator itself: the driver sends `persistedMessages`
   * before syncing (a driver bug: votes and appends are acknowledged before they are durable). */
  sendBeforeSync = false;
  /** Probability that a message stopped by a cut link is reported unreachable to its sender. */
  unreachableReportRate = 0.3;
  /** Nodes whose clocks are stopped (scenarios use it to decide who campaigns). */
  readonly frozen = new Set<NodeId>();
  /** Counters for reports. */
  readonly stats = {
    /** Restarts whose state machine was ahead of the durable commit index. */
    restartsAheadOfCommit: 0,
    readies: 0,
    crashes: 0,
    restarts: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
  };
  readonly #opts: ClusterOptions;
  readonly #logger: Logger;

  /** Creates and bootstraps a cluster of `opts.voters`. */
  constructor(opts: ClusterOptions) {
    this.#opts = opts;
    this.#logger = opts.logger ?? nullLogger;
    this.rng = new Prng(opts.seed);
    this.net = new SimNetwork(this.rng.fork(), opts.faults ?? RELIABLE);
    this.snapshotThreshold = opts.snapshotThreshold ?? Infinity;
    this.crashDuringReadyRate = opts.crashDuringReadyRate ?? 0;
    this.tickSkipRate = opts.tickSkipRate ?? 0;
    this.net.onBlocked = (m) => {
      if (this.rng.chance(this.unreachableReportRate)) {
        this.nodes.get(m.from)?.raw?.reportUnreachable(m.to);
      }
    };
    for (const id of opts.voters) {
      const node = this.#newNode(id);
      RawNode.bootstrap(node.store, opts.voters);
      node.store.syncNow();
      this.#start(node);
    }
  }

  /** Creates a new, empty node that will join when the leader adds it. */
  addNode(id: NodeId): SimNode {
    if (this.nodes.has(id)) throw new RangeError(`node ${id} already exists`);
    const node = this.#newNode(id);
    this.#start(node);
    return node;
  }

  #newNode(id: NodeId): SimNode {
    const store = new SimLogStore();
    const node = new SimNode(id, store, this.rng.fork());
    store.onAppend = (entries, s) =>
      this.checker.observeAppend(id, entries, (i) => {
        if (i < s.firstIndex() - 1 || i > s.lastIndex()) return -1;
        return s.term(i);
      });
    this.nodes.set(id, node);
    return node;
  }

  #config(node: SimNode, applied: number): RaftConfig {
    const o = this.#opts;
    return {
      id: node.id,
      electionTick: o.electionTick ?? 10,
      heartbeatTick: o.heartbeatTick ?? 1,
      preVote: o.preVote ?? true,
      checkQuorum: o.checkQuorum ?? true,
      maxSizePerMsg: o.maxSizePerMsg ?? 256,
      maxInflightMsgs: o.maxInflightMsgs ?? 8,
      maxInflightBytes: 1 << 20,
      snapshotChunkBytes: o.snapshotChunkBytes ?? 64,
      leaseRead: o.leaseRead ?? false,
      tickMs: 1, // one step is one millisecond of the (shared) clock; ticks may be dropped
      random: () => node.rng.float(),
      logger: this.#logger,
      applied,
    };
  }

  #start(node: SimNode, restart = false): void {
    const snap = node.store.snapshot();
    const hs = node.store.initialState().hardState;
    node.reads = [];
    node.leaderTerm = 0;
    node.syncedTerm = hs.term;
    node.syncedVote = hs.vote;
    this.checker.observeRestart(node.id, hs.commit);
    if (restart && this.#opts.durableStateMachine && node.kv.applied >= snap.meta.index) {
      // The state machine kept its state: Raft resumes after its applied index.
      if (node.kv.applied > hs.commit) this.stats.restartsAheadOfCommit++;
      node.raw = new RawNode(this.#config(node, node.kv.applied), node.store);
      node.conf = node.raw.status().conf;
      return;
    }
    node.kv = SimKv.restore(snap.data, snap.meta.index);
    node.conf = structuredClone(snap.meta.conf);
    node.raw = new RawNode(this.#config(node, snap.meta.index), node.store);
  }

  /** The node `id` (throws if unknown). */
  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new RangeError(`no node ${id}`);
    return n;
  }

  /** Ids of running nodes, ascending. */
  liveIds(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.up).map((n) => n.id).sort((a, b) => a - b);
  }

  /** Ids of nodes that are not stopped for good (running or crashed), ascending. */
  memberIds(): NodeId[] {
    return [...this.nodes.values()].filter((n) => !n.stopped).map((n) => n.id).sort((a, b) =>
      a - b
    );
  }

  /** Crashes node `id`: its unsynced writes and all volatile state are lost. */
  crash(id: NodeId): void {
    const node = this.node(id);
    if (!node.raw) return;
    node.raw = null;
    node.store.crash();
    node.reads = [];
    this.stats.crashes++;
    this.listener.onDown?.(node);
  }

  /** Restarts a crashed node from its durable state. */
  restart(id: NodeId): void {
    const node = this.node(id);
    if (node.raw || node.stopped) return;
    this.#start(node, true);
    this.stats.restarts++;
  }

  /** Shuts node `id` down for good (after its removal). */
  stop(id: NodeId): void {
    const node = this.node(id);
    this.crash(id);
    node.stopped = true;
  }

  /** The running leader with the highest term, or null. */
  leader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes.values()) {
      if (!node.raw) continue;
      const st = node.raw.status();
      if (st.role === "leader" && st.term > bestTerm) {
        best = node;
        bestTerm = st.term;
      }
    }
    return best;
  }

  /** Asks `id` for a read index; {@link ClusterListener.onRead} fires with `key` once the node
   * may serve the read. `key` must be unique among pending reads. */
  readIndex(id: NodeId, key: string): void {
    const node = this.node(id);
    if (!node.raw) return;
    node.reads.push({ key, index: -1 });
    node.raw.readIndex(new TextEncoder().encode(key), this.now);
  }

  /** Advances the simulation by one step. */
  step(): void {
    this.now++;
    for (const msg of this.net.deliver(this.now)) {
      const node = this.nodes.get(msg.to);
      if (node?.raw) node.raw.step(msg, this.now);
    }
    for (const node of this.nodes.values()) {
      const skip = this.tickSkipRate + node.clockDrift;
      if (node.raw && !this.frozen.has(node.id) && !this.rng.chance(skip)) {
        node.raw.tick(this.now);
      }
    }
    this.processReadies();
    this.checkInvariants();
  }

  /** Runs `steps` steps. */
  run(steps: number): void {
    for (let i = 0; i < steps; i++) this.step();
  }

  /** Steps until `pred()` holds; returns false if it did not within `maxSteps`. */
  runUntil(pred: () => boolean, maxSteps: number): boolean {
    for (let i = 0; i < maxSteps; i++) {
      if (pred()) return true;
      this.step();
    }
    return pred();
  }

  /** Handles Readies until no running node has one. */
  processReadies(): void {
    for (let round = 0;; round++) {
      let any = false;
      for (const node of this.nodes.values()) {
        if (node.raw && node.raw.hasReady()) {
          any = true;
          this.#handleReady(node);
        }
      }
      if (!any) return;
      if (round > 1000) {
        throw new InvariantViolation("progress", "nodes keep producing Readies without input");
      }
    }
  }

  #send(msgs: Message[]): void {
    for (const m of msgs) {
      if (m.to === m.from || isLocal(m.type)) {
        throw new InvariantViolation(
          "message sanity",
          `node ${m.from} sent a ${MessageType[m.type]} to ${m.to} on the wire`,
        );
      }
      this.net.send(m, this.now);
    }
  }

  #handleReady(node: SimNode): void {
    const raw = node.raw!;
    const store = node.store;
    const rd: Ready = raw.ready();
    this.stats.readies++;
    if (rd.softState?.role === "leader") {
      // Checked against the configuration the election ran under (nothing was applied since).
      const st = raw.status();
      if (!st.conf.voters.includes(node.id) && !st.conf.votersOutgoing.includes(node.id)) {
        throw new InvariantViolation(
          "only voters lead",
          `node ${node.id} became leader of term ${st.term} without being a voter`,
        );
      }
    }
    this.#send(rd.messages);
    if (rd.snapshot) store.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) store.append(rd.entries);
    if (rd.hardState) store.setHardState(rd.hardState);
    if (this.sendBeforeSync) this.#send(rd.persistedMessages);
    const mustSync = !this.#opts.lazyCommitSync || rd.snapshot !== null ||
      rd.entries.length > 0 ||
      (rd.hardState !== null &&
        (rd.hardState.term !== node.syncedTerm || rd.hardState.vote !== node.syncedVote));
    if (mustSync && store.hasUnsynced() && this.rng.chance(this.crashDuringReadyRate)) {
      this.crash(node.id); // messages went out, the writes never reached the disk
      return;
    }
    if (mustSync) {
      store.syncNow();
      if (rd.hardState) {
        node.syncedTerm = rd.hardState.term;
        node.syncedVote = rd.hardState.vote;
      }
    }
    if (rd.snapshot) {
      node.kv = SimKv.restore(rd.snapshot.data, rd.snapshot.meta.index);
      node.conf = structuredClone(rd.snapshot.meta.conf);
      this.checker.observeSnapshot(node.id, rd.snapshot.meta.index, node.kv.fingerprint());
      this.stats.snapshotsInstalled++;
    }
    if (!this.sendBeforeSync) this.#send(rd.persistedMessages);
    for (const e of rd.committedEntries) {
      this.checker.observeApply(node.id, e);
      if (e.index !== node.kv.applied + 1) {
        throw new InvariantViolation(
          "apply order",
          `node ${node.id} applies ${e.index} after ${node.kv.applied}`,
        );
      }
      if (e.type === EntryType.ConfChange) {
        node.kv.skip(e.index);
        node.conf = raw.applyConfChange(decodeConfChange(e.data));
        this.listener.onConfChange?.(node, e, node.conf);
      } else {
        const result = node.kv.apply(e.index, e.data);
        this.listener.onApply?.(node, e, result);
      }
      if (node.raw !== raw) return; // a listener stopped this node
    }
    for (const rs of rd.readStates) {
      const key = new TextDecoder().decode(rs.context);
      const r = node.reads.find((x) => x.key === key);
      if (r) r.index = rs.index;
    }
    raw.advance(rd);
    this.#serveReads(node);
    this.#maybeSnapshot(node);
  }

  #serveReads(node: SimNode): void {
    if (node.reads.length === 0) return;
    const ready = node.reads.filter((r) => r.index >= 0 && r.index <= node.kv.applied);
    if (ready.length === 0) return;
    node.reads = node.reads.filter((r) => !(r.index >= 0 && r.index <= node.kv.applied));
    for (const r of ready) this.listener.onRead?.(node, r.key);
  }

  /** Forgets a pending read (the client gave up on it). */
  dropRead(id: NodeId, key: string): void {
    const node = this.nodes.get(id);
    if (node) node.reads = node.reads.filter((r) => r.key !== key);
  }

  #maybeSnapshot(node: SimNode): void {
    if (node.kv.applied - node.store.snapshotMeta().index < this.snapshotThreshold) return;
    this.snapshot(node.id);
  }

  /** Makes node `id` take a snapshot at its applied index now and compact its log. */
  snapshot(id: NodeId): void {
    const node = this.node(id);
    const applied = node.kv.applied;
    const store = node.store;
    if (!node.raw || applied <= store.snapshotMeta().index) return;
    const data = node.kv.serialize();
    this.checker.observeSnapshot(node.id, applied, node.kv.fingerprint());
    store.createSnapshot({
      meta: { index: applied, term: store.term(applied), conf: structuredClone(node.conf) },
      data,
    });
    this.stats.snapshotsTaken++;
  }

  /** Checks the per-step invariants on every running node. */
  checkInvariants(): void {
    for (const node of this.nodes.values()) {
      const raw = node.raw;
      if (!raw) continue;
      const st = raw.status();
      this.checker.observeCommit(node.id, st.term, st.commit);
      if (st.commit > node.store.lastIndex()) {
        throw new InvariantViolation(
          "commit bound",
          `node ${node.id} commit ${st.commit} is past its last index ${node.store.lastIndex()}`,
        );
      }
      if (st.applied > st.commit || st.applied !== node.kv.applied) {
        throw new InvariantViolation(
          "apply bound",
          `node ${node.id}: raft applied ${st.applied}, commit ${st.commit}, state machine ${node.kv.applied}`,
        );
      }
      if (st.role === "leader") {
        this.checker.observeLeader(node.id, st.term);
        if (node.leaderTerm !== st.term) {
          node.leaderTerm = st.term;
          this.checker.checkLeaderCompleteness(node.id, st.term, node.store);
        }
      } else {
        node.leaderTerm = 0;
      }
    }
  }
}

function isLocal(t: MessageType): boolean {
  return t === MessageType.Hup || t === MessageType.Beat || t === MessageType.Unreachable ||
    t === MessageType.CheckQuorum;
}
