/**
 * One seeded run of the real driver ({@link RaftNode}) under the simulator
 * ({@link DriverCluster}): a random fault profile (lossy, duplicating, reordering network with
 * sub-tick delays; partitions, one-way cuts, a deposed leader cut off with a minority; crashes,
 * torn group commits, fsync failures that must halt a node; stalled event loops; slow fsyncs,
 * applies and background snapshots; membership changes through addMember/removeMember, the
 * leader removing itself; leadership transfers), clients calling `propose` and `readIndex` at
 * random virtual instants, then a heal phase — everyone back, or one member left down, or the
 * leader removing itself just after a member died — that must converge and serve, and finally
 * a linearizability check of the clients' history. `runDriverSimulation(seed)` replays exactly.
 *
 * @module
 */
import { NotLeaderError } from "../errors.ts";
import {
  checkLinearizable,
  formatHistory,
  type KvInput,
  type KvOperation,
} from "../linearizability.ts";
import type { LogFields, Logger } from "../logger.ts";
import type { ConfState, NodeId } from "../types.ts";
import { DriverCluster, type DriverNetFaults, type DriverNode } from "./driver_cluster.ts";
import { InvariantViolation } from "./invariants.ts";
import { encodeCommand, type KvApplyResult, registerCommand } from "./kv.ts";
import { Prng } from "./prng.ts";

/** Faults aimed at one hole each (issue 11 item 17), drawn from a stream of their own. */
interface Nemeses {
  /** Per-tick probability: the leader is cut off alone and its loop stalls for 250–600 ms while
   * the others elect a leader and write; clients read from the old leader meanwhile and after it
   * wakes (a read answered without a heartbeat round or by a stale lease is stale). */
  deposedRate: number;
  /** Probability, at one of a follower incarnation's first ReadIndex requests, that the follower
   * loses power while the answer is in flight and restarts at once; the answer reaches the new
   * incarnation right after its first ReadIndex, and clients read there (read contexts must not
   * repeat across incarnations). */
  readRestartRate: number;
  /** Single voter: probability, at each acknowledged write, of a power loss right then (the
   * commit-only hard state is not synced) and a restart with clients reading at once. */
  soloPowerLoss: number;
}

function chooseNemeses(rng: Prng, nodes: number): Nemeses {
  return {
    deposedRate: nodes >= 3 ? rng.pick([0, 0.01, 0.02, 0.02]) : 0,
    readRestartRate: nodes >= 3 ? rng.pick([0, 0.5, 0.9]) : 0,
    soloPowerLoss: nodes === 1 ? rng.pick([0.05, 0.15, 0.3]) : 0,
  };
}

/** Options of a run. */
export interface DriverSimulationOptions {
  /** Ticks of the chaos phase (default 300). */
  ticks?: number;
  /** Print a trace. */
  trace?: boolean;
  /** Force the heal mode. */
  heal?: HealMode;
  /** Force lease reads on or off. */
  leaseRead?: boolean;
}

/** How the heal phase ends the chaos. */
export type HealMode = "all" | "leave-one-down" | "handoff-to-dead";

/** The outcome of a run. */
export interface DriverSimulationResult {
  /** The seed. */
  seed: number;
  /** True when every check passed. */
  ok: boolean;
  /** What failed. */
  error?: string;
  /** Profile and counters. */
  summary: Record<string, number | string | boolean>;
}

interface Profile {
  nodes: number;
  net: DriverNetFaults;
  partitionRate: number;
  crashRate: number;
  leaderChurn: number;
  stallRate: number;
  eioRate: number;
  tornCrashRate: number;
  syncMs: [number, number];
  smMaxMs: number;
  membership: boolean;
  transferRate: number;
  snapshotThreshold: number;
  /** Applied bytes that also trigger a snapshot (the driver's snapshotBytes; 0: off). */
  snapshotBytes: number;
  maxSizePerMsg: number;
  durableStateMachine: boolean;
  leaseRead: boolean;
  /** Client writes share entries (the driver's batcher). */
  batch: boolean;
  drift: number;
  heal: HealMode;
  clients: number;
  keys: number;
  /** Mean virtual ms between two operations of one client. */
  thinkMs: number;
  readShare: number;
  timeoutMs: number;
  maxAttempts: number;
  /** Sessions expire after this idle time (virtual ms of the state machine's clock). */
  sessionIdleMs: number;
  /** Bound of the session table. */
  maxSessions: number;
  /** Share of writes issued under a fresh session (a CLI call). */
  freshSessionShare: number;
}

function chooseProfile(rng: Prng): Profile {
  const lossy = rng.chance(0.6);
  const maxDelay = rng.pick([0.5, 2, 5, 12, 30]);
  return {
    nodes: rng.pick([1, 3, 3, 3, 5, 5]),
    net: {
      dropRate: lossy ? rng.pick([0.01, 0.05, 0.1, 0.2]) : 0,
      duplicateRate: lossy ? rng.pick([0, 0.02, 0.05]) : 0,
      minDelay: rng.pick([0.05, 0.2, 1]),
      maxDelay,
      fifo: rng.chance(0.5),
      holdRate: rng.pick([0, 0.3, 0.8]),
    },
    partitionRate: rng.pick([0, 0.01, 0.03, 0.06]),
    crashRate: rng.pick([0, 0.005, 0.01, 0.02]),
    leaderChurn: rng.pick([0, 0.02, 0.05]),
    stallRate: rng.pick([0, 0, 0.005, 0.02]),
    eioRate: rng.pick([0, 0, 0, 0.002, 0.01]),
    tornCrashRate: rng.pick([0, 0.5]),
    syncMs: rng.pick([[0, 0.5], [0.5, 3], [1, 15]] as [number, number][]),
    smMaxMs: rng.pick([0, 0, 2, 10]),
    membership: rng.chance(0.4),
    transferRate: rng.pick([0, 0, 0.005]),
    snapshotThreshold: rng.pick([3, 5, 10, 30, 0]),
    snapshotBytes: 0,
    maxSizePerMsg: rng.pick([1, 64, 256, 4096]),
    durableStateMachine: rng.chance(0.3),
    leaseRead: false,
    batch: false,
    drift: 0,
    heal: "all",
    clients: rng.range(2, 5),
    keys: rng.range(1, 3),
    thinkMs: rng.pick([15, 40, 80]),
    readShare: rng.pick([0.3, 0.5, 0.8]),
    timeoutMs: rng.pick([60, 150, 400]),
    maxAttempts: rng.range(2, 6),
    sessionIdleMs: 1e9,
    maxSessions: 1000,
    freshSessionShare: 0,
  };
}

/** Runs seed `seed` (never throws for a failed check; see `ok`). */
export async function runDriverSimulation(
  seed: number,
  options: DriverSimulationOptions = {},
): Promise<DriverSimulationResult> {
  const rng = new Prng(seed ^ 0x5eed);
  const p = chooseProfile(rng);
  // Drawn from a stream of their own, so that adding them did not change the other choices.
  const xrng = new Prng(seed * 31 + 7);
  p.leaseRead = xrng.chance(0.3);
  // Lease reads assume clocks that run at most 5% apart from real time (the core's bound).
  p.drift = p.leaseRead ? xrng.pick([0, 0.01, 0.02]) : xrng.pick([0, 0.05, 0.2]);
  p.heal = xrng.pick(["all", "leave-one-down", "handoff-to-dead"] as HealMode[]);
  // Client sessions (issue 12): often long-lived, sometimes expiring within a client's think
  // time or evicted from a small table.
  p.sessionIdleMs = xrng.pick([1e9, 1e9, 400, 100]);
  p.maxSessions = xrng.pick([1000, 1000, 4, 2]);
  p.freshSessionShare = xrng.pick([0, 0, 0.3]);
  p.batch = xrng.chance(0.5);
  // Drawn last from xrng: the earlier parameters of every seed stay what they were.
  p.snapshotBytes = xrng.pick([0, 0, 64, 512]);
  if (options.heal) p.heal = options.heal;
  if (options.leaseRead !== undefined) p.leaseRead = options.leaseRead;
  const ticks = options.ticks ?? 300;
  const summary: Record<string, number | string | boolean> = {
    nodes: p.nodes,
    heal: p.heal,
    membership: p.membership,
    leaseRead: p.leaseRead,
    batch: p.batch,
    snapshotThreshold: p.snapshotThreshold,
    snapshotBytes: p.snapshotBytes,
    maxDelay: p.net.maxDelay,
    eioRate: p.eioRate,
    sessionIdleMs: p.sessionIdleMs,
    maxSessions: p.maxSessions,
  };
  const trace = options.trace
    ? (msg: string) => console.log(`[${cluster.sched.now.toFixed(2)}] ${msg}`)
    : () => {};
  const logger: Logger | undefined = options.trace
    ? {
      debug() {},
      info: (m: string, f?: LogFields) => trace(`${m} ${JSON.stringify(f ?? {})}`),
      warn: (m: string, f?: LogFields) => trace(`WARN ${m} ${JSON.stringify(f ?? {})}`),
      error: (m: string, f?: LogFields) => trace(`ERROR ${m} ${JSON.stringify(f ?? {})}`),
    }
    : undefined;
  const voters = Array.from({ length: p.nodes }, (_, i) => i + 1);
  const cluster = new DriverCluster({
    seed: rng.nextU32(),
    voters,
    net: p.net,
    eioRate: p.eioRate,
    tornCrashRate: p.tornCrashRate,
    syncMs: p.syncMs,
    smMaxMs: p.smMaxMs,
    snapshotThreshold: p.snapshotThreshold,
    snapshotBytes: p.snapshotBytes,
    maxSizePerMsg: p.maxSizePerMsg,
    durableStateMachine: p.durableStateMachine,
    leaseRead: p.leaseRead,
    batch: p.batch,
    drift: p.drift,
    logger,
  });
  cluster.trace = trace;
  const workload = new DriverWorkload(cluster, p, rng.fork());
  const admin = new DriverAdmin(cluster, rng.fork(), trace);
  const frng = rng.fork();
  const tick = cluster.tickMs;
  const nrng = new Prng(seed * 131 + 11);
  const nem = chooseNemeses(nrng, p.nodes);
  Object.assign(summary, nem);
  const nemesis = new Nemesis(cluster, workload, nem, nrng, trace);
  try {
    cluster.boot();
    workload.begin();
    // Chaos.
    for (let i = 0; i < ticks; i++) {
      // The random faults pause while a targeted one plays out (they would blur it).
      if (!nemesis.active()) {
        faultStep(cluster, p, frng, trace);
        if (p.membership) admin.step();
      }
      nemesis.step();
      await cluster.run(tick);
    }
    // Heal.
    nemesis.stop();
    cluster.healNetwork();
    cluster.net = { ...p.net, dropRate: 0, duplicateRate: 0, holdRate: 0 };
    cluster.eioRate = 0;
    admin.stopChoosing();
    let down: NodeId | null = null;
    for (const id of cluster.memberIds()) cluster.restart(id);
    const budget = 400 * tick;
    if (p.heal === "leave-one-down") {
      // Once the last membership change settled (a change still in flight could need the node
      // left down for its quorum), one voter goes down for good.
      // The admin gives up waiting on a change after its timeout, so "idle" alone does not
      // mean settled: the leader must also have applied its whole log with no joint config.
      await cluster.runUntil(() => admin.idle() && membershipSettled(cluster), budget);
      down = pickDown(cluster, frng);
      if (down !== null) cluster.crash(down);
    }
    trace(`healed${down !== null ? `, ${down} left down` : ""}`);
    // The clients keep going a while (the healed cluster must serve them), then stop.
    await cluster.run(100 * tick);
    workload.issuing = false;
    if (!await cluster.runUntil(() => workload.idle(), budget)) {
      throw new InvariantViolation("liveness", "clients did not finish after healing");
    }
    let ok = await settle(cluster, admin, () => down, budget);
    if (ok && p.heal === "handoff-to-dead") {
      // The leader removes itself, and the voter it hands off to dies the moment the leader
      // applies its removal. Nobody shuts the removed
      // leader down: the hand-off must not wait for the dead node forever.
      const leader = cluster.leader();
      const conf = leader?.conf;
      if (leader && conf && conf.voters.length >= 4) {
        const lid = leader.id;
        trace(`handoff: leader ${lid} removes itself from voters [${conf.voters}]`);
        admin.keepRunning(lid);
        const prev = cluster.listener;
        cluster.listener = {
          ...prev,
          onConfChange: (node, c, index) => {
            prev.onConfChange?.(node, c, index);
            if (node.id !== lid || down !== null || c.voters.includes(lid)) return;
            if (c.votersOutgoing.length > 0) return;
            const target = node.node?.rawNode.raft.leadTransferee ?? 0;
            down = target !== 0 ? target : c.voters.filter((id) => id !== lid)[0];
            trace(`handoff: ${down} dies as ${lid} applies its removal (voters [${c.voters}])`);
            cluster.crash(down);
          },
        };
        summary.handoff = true;
        admin.removeSelf(leader);
        ok = await settle(cluster, admin, () => down, budget);
      }
    }
    if (!ok) {
      throw new InvariantViolation(
        "liveness",
        `healed cluster did not converge within ${budget} ms${
          down !== null ? ` (node ${down} down)` : ""
        }\n${describeDriver(cluster)}`,
      );
    }
    // A fresh write and a read of every key must succeed.
    const final: Promise<boolean>[] = [
      workload.finalOp({ kind: "put", key: "k0", value: "final" }, budget),
    ];
    const writeDone = await cluster.runUntil(() => workload.idle(), budget + 1_000);
    if (!writeDone || !await final[0]) {
      throw new InvariantViolation("liveness", "the healed cluster did not accept a write");
    }
    for (let k = 0; k < p.keys; k++) {
      const r = workload.finalOp({ kind: "get", key: "k" + k }, budget);
      const done = await cluster.runUntil(() => workload.idle(), budget + 1_000);
      if (!done || !await r) throw new InvariantViolation("liveness", `final read of k${k} failed`);
    }
    if (cluster.failure) throw cluster.failure;
    const lin = checkLinearizable(workload.history);
    if (!lin.ok) {
      throw new InvariantViolation(
        "linearizability",
        `history of key ${lin.key} is not linearizable:\n${formatHistory(lin.operations!)}`,
      );
    }
    summary.inconclusive = !!lin.inconclusive;
  } catch (e) {
    Object.assign(summary, collect(cluster, workload), nemesis.counts);
    const error = e instanceof InvariantViolation ? e.message : `exception: ${(e as Error).stack}`;
    cluster.shutdown();
    return { seed, ok: false, error, summary };
  }
  Object.assign(summary, collect(cluster, workload), nemesis.counts);
  cluster.shutdown();
  return { seed, ok: true, summary };
}

/** The leader has applied every entry of its log and is in no joint configuration (no
 * membership change is in flight). */
function membershipSettled(cluster: DriverCluster): boolean {
  const st = cluster.leader()?.node?.status();
  return !!st && st.applied === st.lastIndex && st.conf.votersOutgoing.length === 0;
}

/** A voter whose absence leaves a quorum, or null. */
function pickDown(cluster: DriverCluster, rng: Prng): NodeId | null {
  const leader = cluster.leader() ?? [...cluster.nodes.values()].find((n) => !n.stopped);
  const conf = leader?.conf;
  if (!conf || conf.votersOutgoing.length > 0 || conf.voters.length < 3) return null;
  return rng.pick(conf.voters);
}

async function settle(
  cluster: DriverCluster,
  admin: DriverAdmin,
  downNow: () => NodeId | null,
  budget: number,
): Promise<boolean> {
  let before = -1;
  for (let extra = 0; extra < 10; extra++) {
    const done = () => (admin.reap(), admin.idle() && converged(cluster, downNow()));
    if (await cluster.runUntil(done, budget)) return true;
    // Slow catch-up (one entry per message) is not a livelock: go on while progress is made.
    const now = slowest(cluster, downNow());
    if (now <= before) return false;
    before = now;
  }
  return false;
}

function members(conf: ConfState): NodeId[] {
  return [...conf.voters, ...conf.learners];
}

function converged(cluster: DriverCluster, down: NodeId | null): boolean {
  const leader = cluster.leader();
  if (!leader) return false;
  const st = leader.node!.status();
  // A removed leader still handing off is not a converged cluster.
  if (st.conf.votersOutgoing.length > 0 || !st.conf.voters.includes(leader.id)) return false;
  if (st.applied !== st.commit || st.commit !== st.lastIndex) return false;
  const fp = leader.kv.fingerprint();
  for (const id of members(st.conf)) {
    if (id === down) continue;
    const n = cluster.nodes.get(id);
    if (!n?.up || n.kv.applied !== leader.kv.applied || n.kv.fingerprint() !== fp) return false;
  }
  checkConfBookkeeping(cluster);
  return true;
}

/** What the driver reported (onConfChange, onSnapshotRestored) must be the configuration its
 * Raft core runs: the heal phases pick nodes to kill by it. A node that installed a snapshot
 * spanning a removal once kept the older configuration here, and a fault meant to leave a
 * quorum left none (seeds 1700 and 2822). */
function checkConfBookkeeping(cluster: DriverCluster): void {
  for (const dn of cluster.nodes.values()) {
    if (!dn.up || !dn.node) continue;
    const real = dn.node.status().conf;
    const key = (c: ConfState) =>
      JSON.stringify([c.voters, c.votersOutgoing, c.learners].map((l) => [...l].sort()));
    if (key(real) !== key(dn.conf)) {
      throw new InvariantViolation(
        "harness",
        `node ${dn.id} reported configuration ${key(dn.conf)} but runs ${key(real)}`,
      );
    }
  }
}

function slowest(cluster: DriverCluster, down: NodeId | null): number {
  const leader = cluster.leader();
  if (!leader) return -1;
  let min = Infinity;
  for (const id of members(leader.node!.status().conf)) {
    if (id !== down) min = Math.min(min, cluster.nodes.get(id)?.kv.applied ?? -1);
  }
  return min;
}

function collect(cluster: DriverCluster, workload: DriverWorkload): Record<string, number> {
  return {
    virtualMs: Math.round(cluster.sched.now),
    events: cluster.sched.events,
    ops: workload.history.length,
    completed: workload.stats.completed,
    gaveUp: workload.stats.gaveUp,
    reads: workload.stats.reads,
    registrations: workload.stats.registrations,
    expired: workload.stats.expired,
    notApplied: workload.stats.notApplied,
    crashes: cluster.stats.crashes,
    halts: cluster.stats.halts,
    restarts: cluster.stats.restarts,
    held: cluster.stats.held,
    snapshotsTaken: cluster.stats.snapshotsTaken,
    snapshotsInstalled: cluster.stats.snapshotsInstalled,
    batchEntries: cluster.stats.batchEntries,
    batchedCommands: cluster.stats.batchedCommands,
    leaderTerms: cluster.checker.leaderTerms(),
    maxApplied: cluster.checker.maxApplied(),
    messages: cluster.stats.sent,
  };
}

/** The targeted faults of {@link Nemeses}. */
class Nemesis {
  /** Targeted faults injected, by kind. */
  readonly counts = { deposed: 0, readRestarts: 0, soloLosses: 0 };
  #busyUntil = 0;
  #stopped = false;

  constructor(
    private readonly cl: DriverCluster,
    private readonly workload: DriverWorkload,
    private readonly nem: Nemeses,
    private readonly rng: Prng,
    private readonly trace: (m: string) => void,
  ) {
    if (nem.readRestartRate > 0) {
      const prev = cl.listener;
      cl.listener = {
        ...prev,
        onReadIndexSent: (dn, n) => {
          prev.onReadIndexSent?.(dn, n);
          this.#onReadIndexSent(dn, n);
        },
      };
    }
    if (nem.soloPowerLoss > 0) {
      this.#soloHook = (id, key) => this.#onWriteAcked(id, key);
      workload.onWriteAcked = this.#soloHook;
      const prev = cl.listener;
      cl.listener = {
        ...prev,
        onElected: (dn, term) => {
          prev.onElected?.(dn, term);
          // A read the moment the restarted single voter leads: before its own-term entry
          // commits, its commit index may lag what it acknowledged before the power loss.
          const key = this.#soloRestarted.get(dn.id);
          if (key === undefined) return;
          this.#soloRestarted.delete(dn.id);
          this.workload.probeRead(dn.id, key);
        },
      };
    }
  }

  #soloHook: ((id: NodeId, key: string) => void) | null = null;
  /** Single voters restarted by the nemesis, with the key of the write acknowledged before. */
  readonly #soloRestarted = new Map<NodeId, string>();

  /** Runs `fn` once node `id`'s driver has started (polls each virtual ms, up to a tick). */
  #afterStart(id: NodeId, fn: () => void, left = 10): void {
    const dn = this.cl.nodes.get(id);
    if (dn?.up) fn();
    else if (left > 0) this.cl.sched.after(1, () => this.#afterStart(id, fn, left - 1));
  }

  /** No more targeted faults (the heal phase). */
  stop(): void {
    this.#stopped = true;
    for (const dn of this.cl.nodes.values()) dn.holdForReads = false;
  }

  #busy(): boolean {
    return this.#stopped || this.active();
  }

  /** A targeted fault is playing out. */
  active(): boolean {
    return this.cl.sched.now < this.#busyUntil;
  }

  /** Once per chaos tick. */
  step(): void {
    if (this.#busy() || !this.rng.chance(this.nem.deposedRate)) return;
    const leader = this.cl.leader();
    if (!leader) return;
    const id = leader.id;
    const stallMs = this.rng.range(35, 60) * this.cl.tickMs;
    const cutMs = stallMs + this.rng.range(10, 30) * this.cl.tickMs;
    this.cl.isolate(id);
    this.cl.stall(id, stallMs);
    // Reads go there once the others have had time to elect a leader and write.
    const electMs = 25 * this.cl.tickMs;
    this.workload.magnet(id, cutMs - electMs, electMs);
    this.#busyUntil = this.cl.sched.now + cutMs + 20 * this.cl.tickMs;
    this.counts.deposed++;
    this.trace(`nemesis: leader ${id} cut off and stalled for ${stallMs} ms, reads go there`);
    // Reads arrive just as its loop wakes (after the others wrote).
    this.cl.sched.after(stallMs - this.rng.float() * this.cl.tickMs, () => {
      for (let i = 0; i < 2; i++) this.workload.probeRead(id);
    });
    this.cl.sched.after(cutMs, () => {
      if (this.#stopped) return;
      this.cl.healNetwork();
      this.trace("nemesis: heal network");
    });
  }

  #onReadIndexSent(dn: DriverNode, n: number): void {
    if (n > 1 || this.#busy() || this.counts.readRestarts >= 8) return;
    if (dn.node?.rawNode.raft.role === "leader" || !this.rng.chance(this.nem.readRestartRate)) {
      return;
    }
    this.counts.readRestarts++;
    const id = dn.id;
    const maxDelay = this.cl.net.maxDelay;
    const crashIn = this.rng.float() * 3 * maxDelay;
    const downMs = (0.5 + this.rng.float() * 3) * this.cl.tickMs;
    this.#busyUntil = this.cl.sched.now + crashIn + downMs + 10 * this.cl.tickMs;
    this.cl.sched.after(crashIn, () => {
      if (this.#stopped || !dn.up) return;
      this.trace(`nemesis: ${id} loses power with its read in flight`);
      dn.holdForReads = true;
      this.cl.crash(id);
      // A client of the nemesis writes meanwhile (the answer in flight is older than its
      // write); once it is acknowledged (or after 10 ticks) the node is back, and reads it at
      // once: the new incarnation's first read context, then the frames held through the
      // restart, with the answer to the old incarnation's read.
      let back = false;
      let key: string | undefined;
      const restart = () => {
        if (back || this.#stopped) return;
        back = true;
        this.cl.restart(id);
        this.#afterStart(id, () => {
          this.workload.probeRead(id, key, 400);
          this.cl.sched.after(1 + this.rng.float() * 4, () => this.cl.deliverHeld(id));
        });
        this.workload.magnet(id, 10 * this.cl.tickMs);
      };
      this.workload.probeWrite().then((k) => {
        key = k ?? undefined;
        this.cl.sched.after(this.rng.float() * downMs, restart);
      });
      this.cl.sched.after(10 * this.cl.tickMs, restart);
    });
  }

  #onWriteAcked(id: NodeId, key: string): void {
    if (this.#busy() || !this.rng.chance(this.nem.soloPowerLoss)) return;
    const dn = this.cl.nodes.get(id);
    if (!dn?.up) return;
    this.counts.soloLosses++;
    const downMs = (0.2 + this.rng.float() * 2) * this.cl.tickMs;
    this.#busyUntil = this.cl.sched.now + downMs + 5 * this.cl.tickMs;
    this.trace(`nemesis: single voter ${id} loses power after an acknowledged write`);
    this.cl.crash(id);
    this.cl.sched.after(downMs, () => {
      if (this.#stopped) return;
      this.#soloRestarted.set(id, key);
      this.cl.restart(id);
      this.workload.magnet(id, 30 * this.cl.tickMs);
      // Reads wait at the node until it leads; the driver re-issues unanswered reads every
      // election timeout, on a tick, so some are re-issued on the tick that makes it leader.
      for (let t = 1; t <= 25; t++) {
        this.cl.sched.after(t * this.cl.tickMs, () => {
          if (this.#soloRestarted.has(id)) this.workload.probeRead(id, key, 400);
        });
      }
    });
  }
}

/** One line per node. */
export function describeDriver(cluster: DriverCluster): string {
  const lines: string[] = [];
  for (const dn of cluster.nodes.values()) {
    if (!dn.up) {
      lines.push(`node ${dn.id}: ${dn.stopped ? "stopped" : "down"}`);
      continue;
    }
    const st = dn.node!.status();
    const pr = st.progress
      ? " progress " +
        [...st.progress].map(([id, x]) => `${id}:${x.state}/${x.match}/${x.next}`).join(" ")
      : "";
    lines.push(
      `node ${dn.id}: ${st.role} term ${st.term} lead ${st.lead} commit ${st.commit} applied ${st.applied} ` +
        `log [${st.firstIndex}, ${st.lastIndex}] voters [${st.conf.voters}] out [${st.conf.votersOutgoing}] ` +
        `learners [${st.conf.learners}]${pr} unsynced writes ${dn.store.pendingWrites()} ` +
        `fsyncs in flight ${dn.syncing}${dn.clock?.stalled() ? " (stalled)" : ""}`,
    );
  }
  return lines.join("\n");
}

function faultStep(cluster: DriverCluster, p: Profile, rng: Prng, trace: (m: string) => void) {
  const ids = cluster.memberIds();
  if (rng.chance(p.partitionRate)) {
    const kind = rng.int(5);
    const leader = cluster.leader();
    if (kind === 0 && leader) {
      // The deposed-leader case: the leader and a minority cut off, the leader's loop stalled
      // (it does not notice at once), clients still reading from it.
      const minority = ids.filter((id) => id !== leader.id && rng.chance(0.3))
        .slice(0, Math.max(0, Math.floor((ids.length - 1) / 2) - 1));
      const group = [leader.id, ...minority];
      cluster.partition(group, ids.filter((id) => !group.includes(id)));
      if (p.stallRate > 0) cluster.stall(leader.id, rng.range(1, 60) * cluster.tickMs);
      trace(`cut leader off: [${group}]`);
    } else if (kind === 1) {
      const group = ids.filter(() => rng.chance(0.4));
      cluster.partition(group, ids.filter((id) => !group.includes(id)));
      trace(`partition [${group}]`);
    } else if (kind === 2) {
      const a = rng.pick(ids), b = rng.pick(ids);
      if (a !== b) cluster.cutOneWay(a, b);
      trace(`cut ${a} -> ${b}`);
    } else if (kind === 3) {
      const id = leader && rng.chance(0.5) ? leader.id : rng.pick(ids);
      cluster.isolate(id);
      trace(`isolate ${id}`);
    } else {
      cluster.healNetwork();
      trace("heal network");
    }
  }
  if (cluster.hasCuts() && rng.chance(p.partitionRate)) {
    cluster.healNetwork();
    trace("heal network");
  }
  const majorityUp = () => ids.length - cluster.liveIds().length < Math.floor(ids.length / 2);
  if (p.leaderChurn > 0 && rng.chance(p.leaderChurn)) {
    const leader = cluster.leader();
    const st = leader?.node?.status();
    if (leader && st && st.lastIndex > st.commit) {
      if (rng.chance(0.5) && majorityUp()) cluster.crash(leader.id);
      else {
        cluster.isolate(leader.id);
        trace(`isolate leader ${leader.id} with uncommitted entries`);
      }
    }
  }
  if (rng.chance(p.crashRate)) {
    const up = cluster.liveIds();
    if (up.length > 0 && (majorityUp() || rng.chance(0.1))) {
      const leader = cluster.leader();
      cluster.crash(leader && rng.chance(0.4) ? leader.id : rng.pick(up));
    }
  }
  if (rng.chance(p.crashRate * 2)) {
    const down = ids.filter((id) => !cluster.node(id).inc.alive);
    if (down.length > 0) cluster.restart(rng.pick(down));
  }
  if (rng.chance(p.stallRate)) {
    const leader = cluster.leader();
    const id = leader && rng.chance(0.5) ? leader.id : rng.pick(ids);
    const ms = rng.range(1, 80) * cluster.tickMs;
    cluster.stall(id, ms);
    trace(`stall ${id} for ${ms} ms`);
  }
  if (rng.chance(p.transferRate)) {
    const leader = cluster.leader();
    if (leader) {
      const to = rng.pick(leader.conf.voters.length ? leader.conf.voters : [leader.id]);
      leader.node!.transferLeader(to, { timeoutMs: 200 }).catch(() => {});
      trace(`transfer ${leader.id} -> ${to}`);
    }
  }
}

interface Client {
  id: number;
  /** Request timeout (default: the profile's). */
  timeoutMs?: number;
  /** The session id (0: none registered yet). */
  session: number;
  seq: number;
  hint: NodeId;
  busy: boolean;
}

/** Clients calling the drivers' `propose`/`readIndex` at random virtual instants. Writes carry
 * sessions as the real client library's do (client/client.ts `write`): registered first (the
 * session id is the registration's log index), (session, seq) on every attempt, an expired
 * session renewed once when no attempt may have applied the write, else the write is reported
 * not applied (no attempt can have applied it) or of unknown outcome. Commands carry the
 * proposing node's wall clock reading. */
class DriverWorkload {
  readonly history: KvOperation[] = [];
  readonly stats = {
    started: 0,
    completed: 0,
    gaveUp: 0,
    reads: 0,
    registrations: 0,
    expired: 0,
    notApplied: 0,
  };
  issuing = true;
  readonly #cl: DriverCluster;
  readonly #p: Profile;
  readonly #rng: Prng;
  readonly #clients: Client[] = [];
  #clock = 0;
  #value = 0;
  #magnet: { id: NodeId; from: number; until: number } | null = null;
  #probes = 0;
  /** Called when a write of `key` is acknowledged by node `id`. */
  onWriteAcked: ((id: NodeId, key: string) => void) | null = null;

  constructor(cl: DriverCluster, p: Profile, rng: Prng) {
    this.#cl = cl;
    this.#p = p;
    this.#rng = rng;
    for (let i = 1; i <= p.clients; i++) {
      this.#clients.push({ id: i, session: 0, seq: 0, hint: 0, busy: false });
    }
  }

  begin(): void {
    for (const c of this.#clients) this.#next(c);
  }

  idle(): boolean {
    return this.#clients.every((c) => !c.busy);
  }

  /** A client of its own reads a key at node `id` now (one attempt; recorded in the history
   * like any other operation): a nemesis reads at the instant a hole is open. */
  probeRead(id: NodeId, key = "k" + this.#rng.int(this.#p.keys), timeoutMs?: number): void {
    if (!this.issuing) return;
    const c: Client = {
      id: 1000 + ++this.#probes,
      session: 0,
      seq: 0,
      hint: 0,
      busy: false,
      timeoutMs,
    };
    void this.#op(c, { kind: "get", key }, 1, undefined, id);
  }

  /** A client of its own writes a fresh value to a key at the leader (registering a session
   * first); resolves with the key once the write is acknowledged, null otherwise. */
  async probeWrite(): Promise<string | null> {
    const c: Client = { id: 1000 + ++this.#probes, session: 0, seq: 0, hint: 0, busy: false };
    const key = "k" + this.#rng.int(this.#p.keys);
    const leader = this.#cl.leader()?.id;
    const h = this.history.length; // #op records its operation before its first await
    const value = `${c.id}.${++this.#value}`;
    const ok = await this.#op(c, { kind: "put", key, value }, 2, undefined, leader);
    return ok && !this.history[h].notApplied ? key : null;
  }

  /** For `ms` after `afterMs`, every read goes to node `id` and writes go elsewhere; until
   * then, no operation goes there. */
  magnet(id: NodeId, ms: number, afterMs = 0): void {
    const from = this.#cl.sched.now + afterMs;
    this.#magnet = { id, from, until: from + ms };
  }

  #next(c: Client): void {
    const ms = this.#rng.float() * 2 * this.#p.thinkMs;
    this.#cl.sched.after(ms, () => {
      if (!this.issuing) return;
      void this.#op(c, this.#randomInput(c)).then(() => this.#next(c));
    });
  }

  /** Runs one operation on client 1 (which must be idle); resolves true when it completed. */
  finalOp(input: KvInput, budgetMs: number): Promise<boolean> {
    const c = this.#clients[0];
    // Attempts are bounded by time, not by count: nodes outside the configuration (a removed
    // leader left running, a node whose join never completed) answer "no leader known" at once
    // or only at their deadline, and a client keeps trying the others meanwhile.
    return this.#finalOp(c, input, this.#cl.sched.now + budgetMs);
  }

  async #finalOp(c: Client, input: KvInput, until: number): Promise<boolean> {
    // A write whose session expired meanwhile ends "not applied" or of unknown outcome: the
    // client then issues it again as a new operation.
    while (this.#cl.sched.now < until) {
      const h = this.history.length; // #op records its operation before its first await
      if (await this.#op(c, input, Infinity, until) && !this.history[h].notApplied) {
        return true;
      }
    }
    return false;
  }

  #randomInput(c: Client): KvInput {
    const key = "k" + this.#rng.int(this.#p.keys);
    if (this.#rng.chance(this.#p.readShare)) return { kind: "get", key };
    if (this.#rng.chance(0.15)) return { kind: "delete", key };
    return { kind: "put", key, value: `${c.id}.${++this.#value}` };
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => this.#cl.sched.after(ms, r));
  }

  /** Settles with `p`, or rejects after `ms` (a crashed server never answers). */
  #deadline<T>(p: Promise<T>, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = this.#cl.sched.after(ms, () => reject(new Error("client deadline")));
      p.then((v) => {
        t.cancel();
        resolve(v);
      }, (e) => {
        t.cancel();
        reject(e);
      });
    });
  }

  async #op(
    c: Client,
    input: KvInput,
    maxAttempts = this.#p.maxAttempts,
    until?: number,
    forceTarget?: NodeId,
  ): Promise<boolean> {
    if (c.busy) throw new RangeError(`client ${c.id} is busy`);
    c.busy = true;
    this.stats.started++;
    const h: KvOperation = { client: c.id, call: ++this.#clock, ret: Infinity, input };
    this.history.push(h);
    const write = input.kind !== "get";
    if (write && this.#rng.chance(this.#p.freshSessionShare)) c.session = 0;
    let seq = write && c.session !== 0 ? ++c.seq : 0;
    const timeoutMs = c.timeoutMs ?? this.#p.timeoutMs;
    let attempts = 0;
    /** An attempt under the current session may have applied the write. */
    let uncertain = false;
    let renewed = false;
    const more = (refused: number) =>
      until === undefined ? attempts < maxAttempts && refused < 200 : this.#cl.sched.now < until;
    const done = (notApplied = false) => {
      h.ret = ++this.#clock;
      if (notApplied) {
        h.notApplied = true;
        this.stats.notApplied++;
      }
      this.stats.completed++;
      c.busy = false;
      return true;
    };
    for (let refused = 0; more(refused);) {
      const ids = this.#cl.memberIds();
      // While a nemesis draws reads to one node, writes go elsewhere (to the other side of a
      // partition that node is cut off by).
      const now = this.#cl.sched.now;
      const m = this.#magnet && now < this.#magnet.until ? this.#magnet : null;
      const drawn = m !== null && now >= m.from;
      const others = m && (write || !drawn) ? ids.filter((id) => id !== m.id) : ids;
      const target = forceTarget !== undefined
        ? forceTarget
        : !write && drawn && ids.includes(m.id)
        ? m.id
        : c.hint && (write || this.#rng.chance(0.5)) && others.includes(c.hint)
        ? c.hint
        : this.#rng.pick(others.length > 0 ? others : ids);
      const dn = this.#cl.nodes.get(target)!;
      if (!dn.up) {
        refused++;
        c.hint = 0;
        await this.#sleep(1 + this.#rng.float() * 5);
        continue;
      }
      // A request waits for a stalled event loop like any other I/O.
      if (dn.clock!.stalled()) await this.#sleep(dn.clock!.stalledUntil - this.#cl.sched.now);
      const node = dn.node;
      const inc = dn.inc;
      if (!node || !inc.alive) continue;
      attempts++;
      let registering = false;
      try {
        if (!write) {
          this.stats.reads++;
          await this.#deadline(node.readIndex({ timeoutMs }), timeoutMs + 5);
          if (!inc.alive) throw new Error("server died");
          const value = dn.kv.get(input.key);
          h.ret = ++this.#clock;
          h.output = value;
          c.hint = target;
          this.stats.completed++;
          c.busy = false;
          return true;
        }
        const time = this.#cl.wallClock(dn);
        if (c.session === 0) {
          registering = true;
          const r = await this.#deadline(
            node.propose(registerCommand(this.#p.sessionIdleMs, this.#p.maxSessions, time), {
              timeoutMs,
            }),
            timeoutMs + 5,
          ) as KvApplyResult;
          this.stats.registrations++;
          attempts--; // the write's attempts are counted, not its registration
          c.session = r.sessionId!;
          c.seq = 0;
          seq = ++c.seq;
          uncertain = false;
          c.hint = target;
          continue;
        }
        const data = encodeCommand({
          // This workload issues puts, deletes and gets only.
          kind: input.kind as "put" | "delete",
          session: { id: c.session, seq },
          time,
          key: input.key,
          value: input.kind === "put" ? input.value : "",
        });
        const r = await this.#deadline(
          node.propose(data, { timeoutMs, batch: true }),
          timeoutMs + 5,
        ) as KvApplyResult;
        c.hint = target;
        if (r.ok) {
          this.onWriteAcked?.(target, input.key);
          return done();
        }
        if (r.error !== "session_expired") return done(true); // refused: nothing changed
        this.stats.expired++;
        c.session = 0;
        if (uncertain) break; // an earlier attempt may have applied it: outcome unknown
        if (renewed) return done(true);
        renewed = true; // retried once under a new session
      } catch (e) {
        // Refused by a follower: not proposed. Anything else (a timeout, a lost leadership, a
        // dead server) may have left the write in a log that commits later.
        if (!(e instanceof NotLeaderError) && !registering) uncertain = true;
        c.hint = e instanceof NotLeaderError ? e.leaderId : 0;
        await this.#sleep(1 + this.#rng.float() * 10);
      }
    }
    // Outcome unknown: ret stays Infinity.
    this.stats.gaveUp++;
    c.busy = false;
    return false;
  }
}

/** Membership changes through the drivers' addMember/removeMember (the leader too). */
class DriverAdmin {
  readonly #cl: DriverCluster;
  readonly #rng: Prng;
  readonly #trace: (m: string) => void;
  #busy = false;
  #choosing = true;
  #nextId = 100;
  #admitted = new Set<NodeId>();
  #gone = new Set<NodeId>();
  #removals: { ids: NodeId[]; index: number; voters: NodeId[] }[] = [];
  #lastConfIndex = 0;
  #keep = new Set<NodeId>();

  constructor(cl: DriverCluster, rng: Prng, trace: (m: string) => void) {
    this.#cl = cl;
    this.#rng = rng;
    this.#trace = trace;
    for (const id of cl.memberIds()) this.#admitted.add(id);
    const prev = cl.listener;
    cl.listener = {
      ...prev,
      onConfChange: (node, conf, index) => {
        prev.onConfChange?.(node, conf, index);
        if (index <= this.#lastConfIndex) return;
        this.#lastConfIndex = index;
        this.#onConf(conf, index);
      },
    };
  }

  stopChoosing(): void {
    this.#choosing = false;
  }

  idle(): boolean {
    return !this.#busy;
  }

  #onConf(conf: ConfState, index: number): void {
    const inConf = new Set([
      ...conf.voters,
      ...conf.votersOutgoing,
      ...conf.learners,
      ...conf.learnersNext,
    ]);
    for (const id of inConf) this.#admitted.add(id);
    if (conf.votersOutgoing.length > 0) return;
    const removed = [...this.#admitted].filter((id) => !inConf.has(id) && !this.#gone.has(id));
    for (const id of removed) this.#gone.add(id);
    if (removed.length > 0) this.#removals.push({ ids: removed, index, voters: conf.voters });
  }

  /** Stops removed nodes once every voter of the new configuration has durably committed their
   * removal (earlier, a voter restarting with an older commit could need them again). */
  reap(): void {
    this.#removals = this.#removals.filter((r) => {
      const done = r.voters.every((id) => {
        const n = this.#cl.nodes.get(id);
        return !!n && n.kv.applied >= r.index && n.store.durableHardState().commit >= r.index;
      });
      if (!done) return true;
      for (const id of r.ids) if (!this.#keep.has(id)) this.#cl.stop(id);
      return false;
    });
  }

  step(): void {
    this.reap();
    if (this.#busy || !this.#choosing || !this.#rng.chance(0.02)) return;
    const leader = this.#cl.leader();
    if (!leader) return;
    const conf = leader.node!.status().conf;
    if (conf.votersOutgoing.length > 0) return;
    const voters = conf.voters.filter((id) => !this.#gone.has(id));
    const learners = conf.learners.filter((id) => !this.#gone.has(id));
    const choices: (() => Promise<void>)[] = [];
    if (voters.length + learners.length < 6) {
      choices.push(() => {
        const id = this.#nextId++;
        this.#cl.addNode(id);
        this.#trace(`admin: add ${id}`);
        return leader.node!.addMember(id, new Uint8Array(0), { timeoutMs: 3000 });
      });
    }
    if (voters.length > 3 || (voters.length > 1 && this.#rng.chance(0.3))) {
      const id = this.#rng.chance(0.4) ? leader.id : this.#rng.pick(voters);
      choices.push(() => {
        this.#trace(`admin: remove ${id} at leader ${leader.id}`);
        return leader.node!.removeMember(id, { timeoutMs: 3000 });
      });
    }
    if (learners.length > 0) {
      const id = this.#rng.pick(learners);
      choices.push(() => leader.node!.removeMember(id, { timeoutMs: 3000 }));
    }
    if (choices.length === 0) return;
    this.#runOp(this.#rng.pick(choices));
  }

  #runOp(op: () => Promise<void>): void {
    this.#busy = true;
    let p: Promise<void>;
    try {
      p = op();
    } catch (e) {
      p = Promise.reject(e);
    }
    // A leader that crashed never answers: give up after the operation's own timeout.
    let settled = false;
    const t = this.#cl.sched.after(3100, () => {
      if (!settled) this.#busy = false;
    });
    p.then(() => this.#trace("admin: done"), (e) => this.#trace(`admin: ${(e as Error).message}`))
      .finally(() => {
        settled = true;
        t.cancel();
        this.#busy = false;
      });
  }

  /** Node `id` is not stopped once removed. */
  keepRunning(id: NodeId): void {
    this.#keep.add(id);
  }

  /** The leader removes itself. */
  removeSelf(leader: DriverNode): void {
    this.#runOp(() => leader.node!.removeMember(leader.id, { timeoutMs: 3000 }));
  }
}
