/**
 * A simulated cluster of real drivers: every member is a {@link RaftNode} (raft/node.ts) running
 * on a {@link VirtualClock} of one {@link Scheduler}, over
 *
 * - a {@link SimDisk}: a {@link LogStore} whose `sync()` completes after a virtual delay (so the
 *   driver is suspended between `ready()` and `advance()` while messages and client requests
 *   keep arriving), that can fail an fsync with EIO on command, and that loses at a crash every
 *   write no completed sync covered (optionally keeping a prefix of them: a torn group commit);
 * - a {@link SimSm}: the key-value state machine with client sessions, whose apply, snapshot and
 *   restore complete after virtual delays (the driver's background snapshot overlaps applies);
 * - a network whose messages take a random virtual time (less than a tick too), may be dropped,
 *   duplicated, reordered, cut one way, and may be held while their target is down and delivered
 *   to its next incarnation (a TCP transport keeps frames queued through its reconnect backoff).
 *
 * A crash kills the incarnation: its timers never fire, its pending promises never settle, its
 * late writes are ignored. Everything random comes from one seeded {@link Prng}, and nothing
 * reads the real clock: a seed replays exactly.
 *
 * @module
 */
import type { Logger } from "../logger.ts";
import { RaftNode } from "../node.ts";
import type { ApplyCommand, StateMachine } from "../state_machine.ts";
import type { InitialState, LogStore } from "../storage.ts";
import type { MessageHandler, Transport } from "../transport.ts";
import {
  type ConfState,
  emptyConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  message,
  MessageType,
  type NodeId,
  type Snapshot,
  type SnapshotMeta,
} from "../types.ts";
import { InvariantChecker, InvariantViolation } from "./invariants.ts";
import { encodeBatch, SimKv } from "./kv.ts";
import { Prng } from "./prng.ts";
import { drainMicrotasks, Scheduler, VirtualClock } from "./scheduler.ts";
import { SimLogStore } from "./sim_log_store.ts";

/** Faults of the simulated network (delays in virtual milliseconds). */
export interface DriverNetFaults {
  dropRate: number;
  duplicateRate: number;
  minDelay: number;
  maxDelay: number;
  /** Keep each link's messages in order (a TCP stream) instead of reordering them freely. */
  fifo: boolean;
  /** Probability that a message reaching a down node is held and delivered to its next
   * incarnation instead of being lost. */
  holdRate: number;
}

/** Tunables of a {@link DriverCluster}. */
export interface DriverClusterOptions {
  /** Seed of every random choice. */
  seed: number;
  /** The initial voters. */
  voters: NodeId[];
  /** Virtual milliseconds per tick (default 10). */
  tickMs?: number;
  /** Election timeout in ticks (default 10). */
  electionTick?: number;
  /** Max bytes of entries per append (default 256). */
  maxSizePerMsg?: number;
  /** Entries applied between snapshots (default 0: never). */
  snapshotThreshold?: number;
  /** Applied bytes that also trigger a snapshot (default 0: never). */
  snapshotBytes?: number;
  /** Lease-based reads. */
  leaseRead?: boolean;
  /** Writes proposed with `batch: true` share entries (kv.ts encodeBatch). */
  batch?: boolean;
  /** The state machine survives crashes at its applied index. */
  durableStateMachine?: boolean;
  /** Network faults. */
  net: DriverNetFaults;
  /** fsync latency range in virtual ms. */
  syncMs?: [number, number];
  /** Probability that an fsync fails with EIO. */
  eioRate?: number;
  /** Probability that a crash keeps a random prefix of the unsynced writes. */
  tornCrashRate?: number;
  /** Maximum virtual ms of an apply batch, a snapshot serialization or a restore. */
  smMaxMs?: number;
  /** Per-node clock rates are drawn in [1 - drift, 1 + drift]. */
  drift?: number;
  /** Extra logger (the cluster captures errors itself). */
  logger?: Logger;
}

/** One incarnation of a process. */
interface Incarnation {
  alive: boolean;
  n: number;
}

/** One simulated server: its durable store survives crashes, the rest is per incarnation. */
export class DriverNode {
  /** The node id. */
  readonly id: NodeId;
  /** Durable log (unsynced writes are lost at a crash). */
  readonly store = new SimLogStore();
  /** The state machine of the current incarnation (kept across crashes when durable). */
  kv = new SimKv();
  /** The running driver, null while down or starting. */
  node: RaftNode | null = null;
  /** The current incarnation's clock. */
  clock: VirtualClock | null = null;
  /** The current incarnation. */
  inc: Incarnation = { alive: false, n: 0 };
  /** The transport handler of the current incarnation. */
  handler: MessageHandler | null = null;
  /** Removed from the cluster and stopped for good. */
  stopped = false;
  /** The disk failed (injected EIO): the node must halt. */
  diskFailed = false;
  /** Messages held for the next incarnation. */
  held: Message[] = [];
  /** Hold every message that reaches this node while it is down, for the next incarnation, until
   * {@link DriverCluster.deliverHeld} (the restart-with-reads-in-flight nemesis). */
  holdForReads = false;
  /** ReadIndex requests this incarnation sent (to the leader). */
  readIndexSent = 0;
  /** The clock rate of this machine. */
  rate = 1;
  /** How far this machine's wall clock is ahead of true time (virtual ms). */
  wallSkew = 0;
  /** The last configuration this node applied (or restored). */
  conf: ConfState = emptyConfState();
  /** Private random stream (election timeouts). */
  readonly rng: Prng;
  /** fsyncs in progress. */
  syncing = 0;
  /** Term of the leadership last checked for completeness. */
  leaderTerm = 0;
  /** Highest commit index checked for durability on a quorum (this incarnation). */
  commitChecked = 0;

  /** Creates a down node. */
  constructor(id: NodeId, rng: Prng) {
    this.id = id;
    this.rng = rng;
  }

  /** True while the current incarnation runs (started and not crashed). */
  get up(): boolean {
    return this.node !== null && this.inc.alive;
  }
}

/** Listener of client-visible events. */
export interface DriverListener {
  /** A node went down (crash, halt or stop). */
  onDown?(node: DriverNode): void;
  /** A node applied a configuration change. */
  onConfChange?(node: DriverNode, conf: ConfState, index: number): void;
  /** A node became leader (its driver reported the leadership: its first pass as leader). */
  onElected?(node: DriverNode, term: number): void;
  /** A node sent a ReadIndex request on the wire (`n`: how many this incarnation sent). */
  onReadIndexSent?(node: DriverNode, n: number): void;
}

/** A deterministic cluster of {@link RaftNode}s. */
export class DriverCluster {
  /** Virtual time. */
  readonly sched = new Scheduler();
  /** The run's random stream. */
  readonly rng: Prng;
  /** The safety checker. */
  readonly checker = new InvariantChecker();
  /** Every node ever created. */
  readonly nodes = new Map<NodeId, DriverNode>();
  /** Listeners. */
  listener: DriverListener = {};
  /** Network faults (may change between steps). */
  net: DriverNetFaults;
  /** fsync failure probability (may change). */
  eioRate: number;
  /** Milliseconds per tick. */
  readonly tickMs: number;
  /** fsync latency range (virtual ms; may change). */
  syncMs: [number, number];
  /** Maximum delay of a state machine operation (virtual ms; may change). */
  smMaxMs: number;
  /** The first safety violation or unexpected error seen inside a callback. */
  failure: Error | null = null;
  /** Counters. */
  readonly stats = {
    crashes: 0,
    restarts: 0,
    halts: 0,
    sent: 0,
    dropped: 0,
    held: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    /** Batch entries applied (on any node) and the commands they carried. */
    batchEntries: 0,
    batchedCommands: 0,
  };
  readonly #opts: DriverClusterOptions;
  readonly #cuts = new Set<number>();
  readonly #linkTail = new Map<number, number>();
  readonly #netRng: Prng;
  readonly #diskRng: Prng;
  /** A trace sink. */
  trace: (msg: string) => void = () => {};

  /** Creates the cluster; call {@link DriverCluster.boot} to start the initial voters. */
  constructor(opts: DriverClusterOptions) {
    this.#opts = opts;
    this.rng = new Prng(opts.seed);
    this.#netRng = this.rng.fork();
    this.#diskRng = this.rng.fork();
    this.net = opts.net;
    this.eioRate = opts.eioRate ?? 0;
    this.tickMs = opts.tickMs ?? 10;
    this.syncMs = opts.syncMs ?? [0, 2];
    this.smMaxMs = opts.smMaxMs ?? 0;
  }

  /** Starts the initial voters (each bootstraps the same configuration). */
  boot(): void {
    for (const id of this.#opts.voters) this.#start(this.#newNode(id), this.#opts.voters);
  }

  /** Creates and starts an empty node that joins when the leader adds it. */
  addNode(id: NodeId): DriverNode {
    if (this.nodes.has(id)) throw new RangeError(`node ${id} exists`);
    const dn = this.#newNode(id);
    this.#start(dn, undefined);
    return dn;
  }

  #newNode(id: NodeId): DriverNode {
    const dn = new DriverNode(id, this.rng.fork());
    const drift = this.#opts.drift ?? 0;
    dn.rate = 1 - drift + 2 * drift * this.rng.float();
    dn.wallSkew = this.rng.float() * 50;
    dn.store.onAppend = (entries, s) =>
      this.checker.observeAppend(id, entries, (i) => {
        if (i < s.firstIndex() - 1 || i > s.lastIndex()) return -1;
        return s.term(i);
      });
    this.nodes.set(id, dn);
    return dn;
  }

  /** Records a failure found inside a callback (thrown at the next check). */
  fail(e: Error): void {
    if (!this.failure) this.failure = e;
  }

  #logger(dn: DriverNode, inc: Incarnation): Logger {
    const extra = this.#opts.logger;
    return {
      debug: () => {},
      info: (msg, fields) => extra?.info(`node ${dn.id}: ${msg}`, fields),
      warn: (msg, fields) => {
        extra?.warn(`node ${dn.id}: ${msg}`, fields);
        if (inc.alive && /could not be processed/.test(msg)) {
          this.fail(
            new InvariantViolation("no core exceptions", `${msg} ${JSON.stringify(fields)}`),
          );
        }
      },
      error: (msg, fields) => {
        extra?.error(`node ${dn.id}: ${msg}`, fields);
        if (!inc.alive) return;
        if (dn.diskFailed) {
          // The expected outcome of an injected fsync failure: the process exits and its
          // supervisor restarts it later.
          this.sched.after(0, () => this.halt(dn.id));
          return;
        }
        this.fail(
          new InvariantViolation(
            "no driver errors",
            `node ${dn.id}: ${msg} ${JSON.stringify(fields)}`,
          ),
        );
      },
    };
  }

  #start(dn: DriverNode, bootstrap: NodeId[] | undefined): void {
    const inc: Incarnation = { alive: true, n: dn.inc.n + 1 };
    dn.inc = inc;
    dn.diskFailed = false;
    dn.leaderTerm = 0;
    dn.commitChecked = 0;
    dn.readIndexSent = 0;
    dn.syncing = 0;
    const clock = new VirtualClock(this.sched, dn.rate, dn.rng.float() * 1e6);
    dn.clock = clock;
    const snap = dn.store.snapshot();
    if (!this.#opts.durableStateMachine || dn.kv.applied < snap.meta.index) {
      dn.kv = SimKv.restore(snap.data, snap.meta.index);
    }
    dn.conf = structuredClone(snap.meta.conf);
    this.checker.observeRestart(dn.id, dn.store.initialState().hardState.commit);
    const o = this.#opts;
    const started = RaftNode.start({
      config: {
        id: dn.id,
        electionTick: o.electionTick ?? 10,
        heartbeatTick: 1,
        preVote: true,
        checkQuorum: true,
        maxSizePerMsg: o.maxSizePerMsg ?? 256,
        maxInflightMsgs: 8,
        maxInflightBytes: 1 << 20,
        snapshotChunkBytes: 64,
        leaseRead: o.leaseRead ?? false,
      },
      tickMs: this.tickMs,
      log: new SimDisk(this, dn, inc, this.#diskRng),
      sm: new SimSm(this, dn, inc),
      transport: this.#transport(dn, inc),
      bootstrapVoters: bootstrap,
      snapshotThreshold: o.snapshotThreshold ?? 0,
      snapshotBytes: o.snapshotBytes ?? 0,
      logger: this.#logger(dn, inc),
      clock,
      random: () => dn.rng.float(),
      batcher: o.batch ? { encode: encodeBatch, maxBytes: 256, maxParts: 6 } : undefined,
      onConfChange: (_cc, conf, index) => {
        if (!inc.alive) return;
        dn.conf = structuredClone(conf);
        this.listener.onConfChange?.(dn, conf, index);
      },
      onSnapshotRestored: (meta) => {
        if (!inc.alive) return;
        // A snapshot from the leader can cover configuration changes this node never applied
        // as entries: its configuration is the snapshot's from here on.
        dn.conf = structuredClone(meta.conf);
        this.stats.snapshotsInstalled++;
      },
    });
    started.then((node) => {
      if (!inc.alive) return;
      dn.node = node;
      // The core rebuilt its configuration from the snapshot and the conf changes up to the
      // state machine's applied index (no callback for those): the bookkeeping starts there.
      dn.conf = structuredClone(node.status().conf);
      // Checked the moment the leader's commit index advances, against the configuration that
      // counted the quorum.
      const r = node.rawNode.raft;
      const maybeCommit = r.maybeCommit.bind(r);
      r.maybeCommit = () => {
        const advanced = maybeCommit();
        if (advanced && inc.alive) this.checkCommitDurable(dn, r.log.committed);
        return advanced;
      };
      node.onLeaderChange((lead, term) => {
        if (!inc.alive || lead !== dn.id) return;
        this.#observeLeader(dn, node, term, true);
        this.listener.onElected?.(dn, term);
      });
      // Held frames arrive once the peers' transports reconnect: some time after the start,
      // when the new incarnation may already have requests of its own in flight.
      if (dn.holdForReads) return; // delivered by deliverHeld()
      const held = dn.held;
      dn.held = [];
      const wait = this.#netRng.float() * 8 * this.tickMs;
      this.sched.after(wait, () => {
        if (dn.inc === inc && inc.alive) { for (const m of held) this.#deliverTo(dn, m); }
      });
    }, (e) => {
      if (!inc.alive) return;
      if (dn.diskFailed) this.halt(dn.id); // the start-up sync failed: the process exits
      else this.fail(new Error(`node ${dn.id} failed to start: ${(e as Error).stack}`));
    });
  }

  /** Records a leadership; `elected` when it just began (checked against the configuration the
   * election ran under: a leader may later apply its own removal and lead a little longer). */
  #observeLeader(dn: DriverNode, node: RaftNode, term: number, elected = false): void {
    try {
      const st = node.rawNode.status();
      if (st.role !== "leader" || st.term !== term) return;
      this.checker.observeLeader(dn.id, term);
      if (elected && !st.conf.voters.includes(dn.id) && !st.conf.votersOutgoing.includes(dn.id)) {
        throw new InvariantViolation(
          "only voters lead",
          `node ${dn.id} became leader of term ${term} without being a voter`,
        );
      }
      if (dn.leaderTerm !== term) {
        dn.leaderTerm = term;
        this.checker.checkLeaderCompleteness(dn.id, term, dn.store);
      }
    } catch (e) {
      this.fail(e as Error);
    }
  }

  #transport(dn: DriverNode, inc: Incarnation): Transport {
    return {
      start: (h) => {
        if (inc.alive) dn.handler = h;
        return Promise.resolve();
      },
      send: (msgs) => {
        if (!inc.alive) return;
        for (const m of msgs) this.#send(m);
      },
      addPeer: () => {},
      removePeer: () => {},
      close: () => {
        if (dn.inc === inc) dn.handler = null;
        return Promise.resolve();
      },
    };
  }

  #send(m: Message): void {
    if (m.to === m.from || isLocal(m.type)) {
      this.fail(
        new InvariantViolation(
          "message sanity",
          `node ${m.from} sent a ${MessageType[m.type]} to ${m.to} on the wire`,
        ),
      );
      return;
    }
    if (m.type === MessageType.VoteResp && !m.reject) this.#checkVoteDurable(m);
    if (m.type === MessageType.ReadIndex) {
      const dn = this.nodes.get(m.from);
      if (dn) this.listener.onReadIndexSent?.(dn, ++dn.readIndexSent);
    }
    this.stats.sent++;
    const f = this.net;
    const rng = this.#netRng;
    if (rng.chance(f.dropRate)) {
      this.stats.dropped++;
      return;
    }
    const copies = rng.chance(f.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let at = this.sched.now + f.minDelay + rng.float() * (f.maxDelay - f.minDelay);
      const l = link(m.from, m.to);
      if (f.fifo) {
        at = Math.max(at, this.#linkTail.get(l) ?? 0);
        this.#linkTail.set(l, at);
      }
      this.sched.at(at, () => this.#arrive(m));
    }
  }

  /** A granted vote leaves only once it is durable: a restart of the voter must remember it, or
   * it could vote again in the same term (two leaders of one term). */
  #checkVoteDurable(m: Message): void {
    const hs = this.nodes.get(m.from)?.store.durableHardState();
    // A durable term above the vote's is fine: the node can no longer vote in that term.
    if (!hs || hs.term < m.term || (hs.term === m.term && hs.vote !== m.to)) {
      this.fail(
        new InvariantViolation(
          "votes are durable before they are sent",
          `node ${m.from} granted its vote of term ${m.term} to ${m.to} while its durable hard ` +
            `state is term ${hs?.term} vote ${hs?.vote}`,
        ),
      );
    }
  }

  /** Every entry the leader `dn` counts as committed is durable on a quorum of its configuration
   * (else a crash of the ones that have it only in memory could lose a committed entry). */
  checkCommitDurable(dn: DriverNode, commit: number): void {
    if (commit <= dn.commitChecked) return;
    const r = dn.node?.rawNode.raft;
    if (!r || r.role !== "leader") return;
    const cfg = r.trk.config;
    let term: number;
    try {
      term = dn.store.term(commit);
    } catch {
      return; // compacted meanwhile
    }
    // Durable logs are contiguous: having the entry at the commit index implies the earlier ones
    // (log matching), or a snapshot covering them.
    const has = (id: NodeId) => this.nodes.get(id)?.store.durablyHas(commit, term) ?? false;
    const quorum = (ids: Set<NodeId>) =>
      ids.size === 0 || [...ids].filter(has).length > ids.size / 2;
    if (!quorum(cfg.voters) || !quorum(cfg.outgoing)) {
      const who = [...new Set([...cfg.voters, ...cfg.outgoing])].filter(has);
      this.fail(
        new InvariantViolation(
          "committed entries are durable on a quorum",
          `leader ${dn.id} (term ${r.term}) commits ${commit} (term ${term}), durable only on ` +
            `[${who}] of voters [${[...cfg.voters]}]` +
            (cfg.outgoing.size ? ` outgoing [${[...cfg.outgoing]}]` : ""),
        ),
      );
    }
    dn.commitChecked = commit;
  }

  #arrive(m: Message): void {
    if (this.#cuts.has(link(m.from, m.to))) {
      if (this.#netRng.chance(0.3)) {
        const sender = this.nodes.get(m.from);
        if (sender?.up) {
          this.#deliverTo(
            sender,
            message({ type: MessageType.Unreachable, from: m.to, to: m.from }),
          );
        }
      }
      return;
    }
    const dn = this.nodes.get(m.to);
    if (!dn || dn.stopped) return;
    if (!dn.up) {
      if (dn.holdForReads || this.#netRng.chance(this.net.holdRate)) {
        dn.held.push(m);
        this.stats.held++;
      }
      return;
    }
    this.#deliverTo(dn, m);
  }

  #deliverTo(dn: DriverNode, m: Message): void {
    const inc = dn.inc;
    dn.clock!.exec(() => {
      if (dn.inc === inc && inc.alive) dn.handler?.({ ...m });
    });
  }

  // ------------------------------------------------------------------ faults

  /** Delivers the messages held for node `id` to its running incarnation now. */
  deliverHeld(id: NodeId): void {
    const dn = this.node(id);
    dn.holdForReads = false;
    if (!dn.up) return;
    const held = dn.held;
    dn.held = [];
    // In order, one frame after another (each may start a pass of its own).
    const inc = dn.inc;
    held.forEach((m, i) =>
      this.sched.after(i * 0.05, () => {
        if (dn.inc === inc && inc.alive) this.#deliverTo(dn, m);
      })
    );
  }

  /** Cuts the link from `a` to `b`. */
  cutOneWay(a: NodeId, b: NodeId): void {
    this.#cuts.add(link(a, b));
  }

  /** Separates `group` from `others` both ways. */
  partition(group: readonly NodeId[], others: readonly NodeId[]): void {
    for (const a of group) {
      for (const b of others) {
        this.cutOneWay(a, b);
        this.cutOneWay(b, a);
      }
    }
  }

  /** Cuts `id` off from everyone. */
  isolate(id: NodeId): void {
    this.partition([id], [...this.nodes.keys()].filter((x) => x !== id));
  }

  /** Restores every link. */
  healNetwork(): void {
    this.#cuts.clear();
  }

  /** True when some link is cut. */
  hasCuts(): boolean {
    return this.#cuts.size > 0;
  }

  /** Power loss of node `id`: the incarnation dies, unsynced writes are lost (a prefix may
   * survive). */
  crash(id: NodeId): void {
    const dn = this.node(id);
    if (!dn.inc.alive) return;
    this.#kill(dn);
    if (this.#diskRng.chance(this.#opts.tornCrashRate ?? 0)) {
      dn.store.syncNow(this.#diskRng.int(dn.store.pendingWrites() + 1));
    }
    dn.store.crash();
    this.stats.crashes++;
    this.trace(`crash ${id}`);
    this.listener.onDown?.(dn);
  }

  /** The process of node `id` exits after a fatal error (what it wrote stays; the OS keeps it
   * unless the machine loses power too). */
  halt(id: NodeId): void {
    const dn = this.node(id);
    if (!dn.inc.alive) return;
    this.#kill(dn);
    // A failed fsync leaves the unsynced writes in an unknown state: treat them as lost.
    dn.store.crash();
    this.stats.halts++;
    this.trace(`halt ${id} (disk failure)`);
    this.listener.onDown?.(dn);
  }

  #kill(dn: DriverNode): void {
    dn.inc.alive = false;
    dn.clock?.kill();
    // The process is gone: nothing of it may run any more. stop() marks the driver stopped at
    // once (its pending I/O never completes, so it goes no further than that).
    dn.node?.stop().catch(() => {});
    dn.node = null;
    dn.handler = null;
  }

  /** Restarts a down node from its durable state. */
  restart(id: NodeId): void {
    const dn = this.node(id);
    if (dn.inc.alive || dn.stopped) return;
    this.stats.restarts++;
    this.trace(`restart ${id}`);
    this.#start(dn, this.#opts.voters.includes(id) ? this.#opts.voters : undefined);
  }

  /** Stops node `id` for good (cleanly, after its removal). */
  stop(id: NodeId): void {
    const dn = this.node(id);
    if (dn.stopped) return;
    dn.stopped = true;
    const node = dn.node;
    this.trace(`stop ${id}`);
    if (node) {
      const inc = dn.inc;
      node.stop().finally(() => {
        inc.alive = false;
        dn.clock?.kill();
      });
      dn.node = null;
    } else this.#kill(dn);
    this.listener.onDown?.(dn);
  }

  /** Ends the run: every incarnation dies (nothing of it runs any more). */
  shutdown(): void {
    for (const dn of this.nodes.values()) this.#kill(dn);
  }

  /** Stalls node `id`'s event loop for `ms` virtual ms (a long synchronous task). */
  stall(id: NodeId, ms: number): void {
    const dn = this.node(id);
    if (dn.up) dn.clock!.stall(ms);
  }

  // ------------------------------------------------------------------ queries

  /** Node `id` (throws if unknown). */
  node(id: NodeId): DriverNode {
    const n = this.nodes.get(id);
    if (!n) throw new RangeError(`no node ${id}`);
    return n;
  }

  /** Ids of running nodes. */
  liveIds(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.up).map((n) => n.id).sort((a, b) => a - b);
  }

  /** Ids of nodes not stopped for good. */
  memberIds(): NodeId[] {
    return [...this.nodes.values()].filter((n) => !n.stopped).map((n) => n.id)
      .sort((a, b) => a - b);
  }

  /** Node `dn`'s wall clock (virtual ms; what the service stamps on a command: skewed and
   * drifting per machine, surviving restarts). */
  wallClock(dn: DriverNode): number {
    return Math.floor(dn.wallSkew + this.sched.now * dn.rate) + 1;
  }

  /** The running leader of the highest term. */
  leader(): DriverNode | null {
    let best: DriverNode | null = null;
    let bestTerm = -1;
    for (const dn of this.nodes.values()) {
      if (!dn.up) continue;
      const r = dn.node!.rawNode.raft;
      if (r.role === "leader" && r.term > bestTerm) {
        best = dn;
        bestTerm = r.term;
      }
    }
    return best;
  }

  // ------------------------------------------------------------------ time

  /** Runs events for `ms` virtual milliseconds, checking the invariants every tick. */
  async run(ms: number): Promise<void> {
    const end = this.sched.now + ms;
    while (this.sched.now < end) {
      const until = Math.min(end, Math.floor(this.sched.now / this.tickMs + 1) * this.tickMs);
      while (this.sched.runNext(until)) {
        await drainMicrotasks();
        if (this.failure) throw this.failure;
      }
      this.sched.now = until;
      await drainMicrotasks();
      this.checkInvariants();
    }
  }

  /** Runs until `pred()` holds (checked every tick) or `ms` passed; returns whether it held. */
  async runUntil(pred: () => boolean, ms: number): Promise<boolean> {
    const end = this.sched.now + ms;
    while (this.sched.now < end) {
      if (pred()) return true;
      await this.run(this.tickMs);
    }
    return pred();
  }

  /** Checks the per-tick invariants of every running node. */
  checkInvariants(): void {
    if (this.failure) throw this.failure;
    for (const dn of this.nodes.values()) {
      if (!dn.up) continue;
      const node = dn.node!;
      const r = node.rawNode.raft;
      this.checker.observeCommit(dn.id, r.term, r.log.committed);
      if (r.log.committed > r.log.lastIndex()) {
        throw new InvariantViolation(
          "commit bound",
          `node ${dn.id} commit ${r.log.committed} is past its last index ${r.log.lastIndex()}`,
        );
      }
      const applied = node.status().applied;
      if (applied > r.log.committed) {
        throw new InvariantViolation(
          "apply bound",
          `node ${dn.id} applied ${applied} past its commit ${r.log.committed}`,
        );
      }
      if (r.role === "leader") this.#observeLeader(dn, node, r.term);
    }
  }
}

/** The log store of one incarnation over the node's durable {@link SimLogStore}. */
export class SimDisk implements LogStore {
  readonly #cl: DriverCluster;
  readonly #dn: DriverNode;
  readonly #inc: Incarnation;
  readonly #rng: Prng;
  #failed: Error | null = null;

  /** A disk handle for incarnation `inc` of `dn`. */
  constructor(cl: DriverCluster, dn: DriverNode, inc: Incarnation, rng: Prng) {
    this.#cl = cl;
    this.#dn = dn;
    this.#inc = inc;
    this.#rng = rng;
  }

  #store(): SimLogStore {
    return this.#dn.store;
  }

  /** Reads delegate to the store. */
  initialState(): InitialState {
    return this.#store().initialState();
  }
  /** Reads delegate to the store. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[] {
    return this.#store().entries(lo, hi, maxBytes);
  }
  /** Reads delegate to the store. */
  term(index: number): number {
    return this.#store().term(index);
  }
  /** Reads delegate to the store. */
  firstIndex(): number {
    return this.#store().firstIndex();
  }
  /** Reads delegate to the store. */
  lastIndex(): number {
    return this.#store().lastIndex();
  }
  /** Reads delegate to the store. */
  snapshotMeta(): SnapshotMeta {
    return this.#store().snapshotMeta();
  }
  /** Reads delegate to the store. */
  snapshot(): Snapshot {
    return this.#store().snapshot();
  }
  /** Writes of a dead incarnation are ignored. */
  append(entries: Entry[]): void {
    if (this.#inc.alive) this.#store().append(entries);
  }
  /** Writes of a dead incarnation are ignored. */
  setHardState(hs: HardState): void {
    if (this.#inc.alive) this.#store().setHardState(hs);
  }
  /** Writes of a dead incarnation are ignored. */
  applySnapshot(snap: Snapshot): void {
    if (this.#inc.alive) this.#store().applySnapshot(snap);
  }
  /** Writes of a dead incarnation are ignored. */
  createSnapshot(snap: Snapshot): void {
    if (!this.#inc.alive) return;
    this.#store().createSnapshot(snap);
    this.#cl.stats.snapshotsTaken++;
  }

  /** Makes the writes recorded so far durable after a virtual delay; may fail with EIO (and then
   * every later sync fails too: a failed fsync is never retried). */
  sync(): Promise<void> {
    if (!this.#inc.alive) return new Promise(() => {});
    if (this.#failed) return Promise.reject(this.#failed);
    const count = this.#store().pendingWrites();
    const [lo, hi] = this.#cl.syncMs;
    const ms = lo + this.#rng.float() * (hi - lo);
    const dn = this.#dn;
    dn.syncing++;
    return new Promise((resolve, reject) => {
      dn.clock!.run(ms, () => {
        if (!this.#inc.alive) return;
        dn.syncing--;
        if (this.#rng.chance(this.#cl.eioRate)) {
          this.#failed = new Error("EIO: fsync failed (injected)");
          this.#dn.diskFailed = true;
          this.#cl.trace(`node ${this.#dn.id}: fsync EIO`);
          reject(this.#failed);
          return;
        }
        this.#store().syncNow(count);
        resolve();
      });
    });
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The state machine of one incarnation: applies to the node's {@link SimKv} after a delay. */
export class SimSm implements StateMachine {
  readonly #cl: DriverCluster;
  readonly #dn: DriverNode;
  readonly #inc: Incarnation;

  /** A state machine handle for incarnation `inc` of `dn`. */
  constructor(cl: DriverCluster, dn: DriverNode, inc: Incarnation) {
    this.#cl = cl;
    this.#dn = dn;
    this.#inc = inc;
  }

  /** The applied index of the node's state. */
  appliedIndex(): number {
    return this.#dn.kv.applied;
  }

  #later<T>(fn: () => T): Promise<T> {
    if (!this.#inc.alive) return new Promise(() => {});
    const max = this.#cl.smMaxMs;
    const ms = max > 0 && this.#dn.rng.chance(0.3) ? this.#dn.rng.float() * max : 0;
    return new Promise((resolve, reject) => {
      this.#dn.clock!.run(ms, () => {
        if (!this.#inc.alive) return;
        try {
          resolve(fn());
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  /** Applies the commands in order (checked against every other node's applies). */
  apply(cmds: ApplyCommand[]): Promise<unknown[]> {
    const dn = this.#dn;
    // The entries' terms, read now (the log still holds them).
    const terms = cmds.map((c) => {
      try {
        return dn.store.term(c.index);
      } catch {
        return -1;
      }
    });
    return this.#later(() =>
      cmds.map((c, i) => {
        if (terms[i] >= 0) {
          this.#cl.checker.observeApply(dn.id, {
            index: c.index,
            term: terms[i],
            type: EntryType.Normal,
            data: c.data,
          });
        }
        const r = dn.kv.applyEntry(c.index, c.data);
        if (Array.isArray(r)) {
          this.#cl.stats.batchEntries++;
          this.#cl.stats.batchedCommands += r.length;
        }
        return r;
      })
    );
  }

  /** Serializes the state as of now; the bytes are handed over after a delay. */
  snapshot(): Promise<Uint8Array> {
    const kv = this.#dn.kv;
    const data = kv.serialize();
    try {
      this.#cl.checker.observeSnapshot(this.#dn.id, kv.applied, kv.fingerprint());
    } catch (e) {
      this.#cl.fail(e as Error);
    }
    return this.#later(() => data);
  }

  /** Replaces the state with a snapshot (after a delay). */
  restore(data: Uint8Array, index: number): Promise<void> {
    return this.#later(() => {
      const kv = SimKv.restore(data, index);
      this.#dn.kv = kv;
      this.#cl.checker.observeSnapshot(this.#dn.id, index, kv.fingerprint());
    });
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function link(from: NodeId, to: NodeId): number {
  return from * 65536 + to;
}

function isLocal(t: MessageType): boolean {
  return t === MessageType.Hup || t === MessageType.Beat || t === MessageType.Unreachable ||
    t === MessageType.CheckQuorum;
}
