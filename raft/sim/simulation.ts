/**
 * One seeded simulation run: a cluster under a randomly chosen fault profile (lossy, duplicating,
 * reordering network; partitions, asymmetric ones included; crashes, also in the middle of
 * persisting a Ready; membership changes, leader removal included; leadership transfers;
 * snapshots with small thresholds), clients writing and reading through it, then a healing
 * phase that checks the cluster converges and makes progress, and finally a linearizability
 * check of the clients' history. The seed decides everything, so `runSimulation(seed)` replays.
 *
 * @module
 */
import { checkLinearizable, formatHistory } from "../linearizability.ts";
import type { LogFields, Logger } from "../logger.ts";
import { type ConfChange, ConfChangeType, type ConfState, type NodeId } from "../types.ts";
import { SimCluster } from "./cluster.ts";
import { InvariantViolation } from "./invariants.ts";
import type { NetworkFaults } from "./network.ts";
import { Prng } from "./prng.ts";
import { Workload } from "./workload.ts";
import { simKvBugs } from "./kv.ts";

/** Size of a run. */
export interface SimulationOptions {
  /** Steps of the chaotic phase (default 300). */
  steps?: number;
  /** Steps allowed for the healed cluster to converge (default 400). */
  healSteps?: number;
  /** Share of single-key writes that are compare-and-sets (default: picked by the seed). */
  casShare?: number;
  /** Share of operations on key groups, atomic multi-key (default: picked by the seed). */
  multiShare?: number;
  /** Print a trace of the run's events to the console. */
  trace?: boolean;
  /** Run the nodes with lease-based reads (default: ReadIndex with a heartbeat round). */
  leaseRead?: boolean;
  /** Force every clock to run at the same rate (no per-node drift). */
  noDrift?: boolean;
  /** Deliberate bugs, to show that the checks catch them. */
  bugs?: {
    /** Gets read the contacted node's state without ReadIndex. */
    staleReads?: boolean;
    /** Compare-and-set ignores its expected value. */
    brokenCas?: boolean;
    /** Multi-key puts become visible one key at a time. */
    tornMultiPut?: boolean;
    /** Log stores do not make the hard state durable. */
    volatileHardState?: boolean;
    /** The driver acknowledges (sends persisted messages) before syncing; crashes while
     * handling a Ready become likely so that it matters. */
    sendBeforeSync?: boolean;
    /** A write under an expired session is applied but answered "session expired". */
    expiredStillApplies?: boolean;
  };
  /** Force short-lived sessions: this idle time (steps) and a table of 3. */
  sessionIdle?: number;
}

/** What a run did. */
export interface SimulationResult {
  /** The seed. */
  seed: number;
  /** True when every check passed. */
  ok: boolean;
  /** The failure (property and detail), when not ok. */
  error?: string;
  /** The run's profile and counters. */
  summary: Record<string, number | string | boolean>;
}

interface Profile {
  nodes: number;
  faults: NetworkFaults;
  partitionRate: number;
  crashRate: number;
  crashDuringReadyRate: number;
  membership: boolean;
  transferRate: number;
  snapshotThreshold: number;
  tickSkipRate: number;
  /** Up to this much extra tick-skip probability per node (slow clocks). */
  clockDrift: number;
  /** Lease-based reads (clocks run at one rate; ticks may be dropped). */
  leaseRead: boolean;
  /** Skip syncing commit-only hard states, like the production driver. */
  lazyCommitSync: boolean;
  /** The state machine survives crashes (restart resumes at its applied index). */
  durableStateMachine: boolean;
  /** Bytes of entries per append (1: one entry per message, so replication is often partial). */
  maxSizePerMsg: number;
  /** Per-step probability of crashing or cutting off a leader that holds uncommitted entries
   * (diverging logs across terms: the Figure 8 situations). */
  leaderChurn: number;
}

function chooseProfile(rng: Prng): Profile {
  const lossy = rng.chance(0.7);
  return {
    nodes: rng.pick([1, 3, 3, 3, 5, 5]),
    faults: {
      dropRate: lossy ? rng.pick([0.01, 0.05, 0.1, 0.2]) : 0,
      duplicateRate: lossy ? rng.pick([0, 0.02, 0.05]) : 0,
      minDelay: 1,
      maxDelay: rng.pick([1, 2, 3, 5]),
    },
    partitionRate: rng.pick([0, 0.01, 0.02, 0.04, 0.08]),
    crashRate: rng.pick([0, 0.005, 0.01, 0.02]),
    crashDuringReadyRate: rng.pick([0, 0, 0.002, 0.01]),
    membership: rng.chance(0.5),
    transferRate: rng.pick([0, 0, 0.005]),
    snapshotThreshold: rng.pick([3, 5, 8, 20, Infinity]),
    tickSkipRate: rng.pick([0, 0.05, 0.2]),
    clockDrift: rng.pick([0, 0, 0.3, 0.6]),
    leaseRead: rng.chance(0.25),
    lazyCommitSync: rng.chance(0.5),
    durableStateMachine: rng.chance(0.3),
    maxSizePerMsg: rng.pick([1, 64, 256, 4096]),
    leaderChurn: rng.pick([0, 0, 0.03, 0.1]),
  };
}

function sessionProfile(seed: number, idle: number | undefined) {
  const r = new Prng(seed * 17 + 3);
  if (idle !== undefined) return { sessionIdle: idle, maxSessions: 3, freshSessionShare: 0.2 };
  return {
    sessionIdle: r.pick([1e9, 1e9, 60, 20]),
    maxSessions: r.pick([1000, 1000, 4, 2]),
    freshSessionShare: r.pick([0, 0, 0.3]),
  };
}

/** Runs the simulation for `seed`; never throws for a failed check (see `ok`/`error`). */
export function runSimulation(seed: number, options: SimulationOptions = {}): SimulationResult {
  simKvBugs.casIgnoresExpected = options.bugs?.brokenCas ?? false;
  simKvBugs.tornMultiPut = options.bugs?.tornMultiPut ?? false;
  simKvBugs.expiredStillApplies = options.bugs?.expiredStillApplies ?? false;
  try {
    return run(seed, options);
  } finally {
    simKvBugs.casIgnoresExpected = false;
    simKvBugs.tornMultiPut = false;
    simKvBugs.expiredStillApplies = false;
  }
}

function run(seed: number, options: SimulationOptions): SimulationResult {
  const steps = options.steps ?? 300;
  const healSteps = options.healSteps ?? 400;
  const rng = new Prng(seed);
  const p = chooseProfile(rng);
  if (options.leaseRead) p.leaseRead = true;
  // Lease reads are dated by the driver's clock (one step = 1 ms for every node), not by ticks,
  // so dropped ticks (stalled event loops, slow tick clocks) are part of lease runs.
  if (options.noDrift) {
    p.clockDrift = 0;
    p.tickSkipRate = 0;
  }
  const summary: Record<string, number | string | boolean> = {
    nodes: p.nodes,
    membership: p.membership,
    snapshotThreshold: String(p.snapshotThreshold),
    dropRate: p.faults.dropRate,
    leaseRead: p.leaseRead,
    lazyCommitSync: p.lazyCommitSync,
    durableStateMachine: p.durableStateMachine,
  };
  const trace = options.trace
    ? (msg: string) => console.log(`[${cluster.now}] ${msg}`)
    : (_msg: string) => {};
  const coreErrors: string[] = [];
  const logger: Logger = {
    debug() {},
    info(msg: string, fields?: LogFields) {
      if (options.trace) console.log(`[${cluster.now}] ${msg} ${JSON.stringify(fields ?? {})}`);
    },
    warn(msg: string, fields?: LogFields) {
      if (options.trace) {
        console.log(`[${cluster.now}] WARN ${msg} ${JSON.stringify(fields ?? {})}`);
      }
      if (/could not be processed/.test(msg)) coreErrors.push(`${msg} ${JSON.stringify(fields)}`);
    },
    error(msg: string, fields?: LogFields) {
      coreErrors.push(`${msg} ${JSON.stringify(fields)}`);
    },
  };
  const voters = Array.from({ length: p.nodes }, (_, i) => i + 1);
  const cluster = new SimCluster({
    seed: rng.nextU32(),
    voters,
    faults: p.faults,
    snapshotThreshold: p.snapshotThreshold,
    crashDuringReadyRate: p.crashDuringReadyRate,
    tickSkipRate: p.tickSkipRate,
    leaseRead: p.leaseRead,
    lazyCommitSync: p.lazyCommitSync,
    durableStateMachine: p.durableStateMachine,
    maxSizePerMsg: p.maxSizePerMsg,
    logger,
  });
  const workload = new Workload(cluster, {
    clients: rng.range(1, 8),
    keys: rng.range(1, 4),
    rate: rng.pick([0.1, 0.3, 0.6]),
    timeout: rng.pick([8, 15, 40]),
    maxAttempts: rng.range(2, 8),
    readShare: rng.pick([0.2, 0.5, 0.8]),
    deleteShare: 0.15,
    casShare: options.casShare ?? rng.pick([0, 0.3, 0.6]),
    multiShare: options.multiShare ?? rng.pick([0, 0.15, 0.3]),
    unsafeLocalReads: options.bugs?.staleReads,
    // Sessions (issue 12), from a stream of their own: mostly long-lived, sometimes expiring
    // between a client's operations or evicted from a small table, sometimes one per write.
    ...sessionProfile(seed, options.sessionIdle),
  });
  for (const node of cluster.nodes.values()) node.clockDrift = frngDrift(rng, p.clockDrift);
  if (options.bugs?.sendBeforeSync) {
    cluster.sendBeforeSync = true;
    cluster.crashDuringReadyRate = 0.05;
  }
  if (options.bugs?.volatileHardState) {
    for (const node of cluster.nodes.values()) node.store.lieAboutHardState = true;
  }
  const admin = new Admin(cluster, trace);
  const frng = rng.fork(); // fault decisions

  const checkCore = () => {
    if (coreErrors.length > 0) throw new InvariantViolation("no core exceptions", coreErrors[0]);
  };

  try {
    // Chaos.
    for (let i = 0; i < steps; i++) {
      faultStep(cluster, p, frng, trace);
      if (p.membership) admin.step(frng);
      workload.tick();
      cluster.step();
      checkCore();
    }
    // Heal: a reliable network, every member back up, no new membership changes.
    cluster.net.healAll();
    cluster.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 2 };
    cluster.crashDuringReadyRate = 0;
    cluster.tickSkipRate = 0;
    for (const node of cluster.nodes.values()) node.clockDrift = 0;
    for (const id of cluster.memberIds()) cluster.restart(id);
    trace("healed");
    // The clients keep going for a while: the healed cluster must serve them.
    for (let i = 0; i < healSteps / 2; i++) {
      admin.finish();
      workload.tick();
      cluster.step();
      checkCore();
    }
    workload.issuing = false;
    // Converge within healSteps, or longer while the slowest member keeps making progress (a
    // long log sent one entry per message is slow, not stuck).
    const settle = () =>
      cluster.runUntil(() => {
        admin.finish();
        workload.tick();
        return workload.idle() && converged(cluster);
      }, healSteps);
    let quiet = settle();
    for (let extra = 0; !quiet && extra < 20; extra++) {
      const before = slowestApplied(cluster);
      quiet = settle();
      if (!quiet && slowestApplied(cluster) <= before) break;
    }
    checkCore();
    if (!quiet) {
      throw new InvariantViolation(
        "liveness",
        `healed cluster did not converge within ${healSteps} steps (idle clients: ${workload.idle()})\n${
          describe(cluster)
        }`,
      );
    }
    // The converged cluster must accept a write.
    const completed = workload.stats.completed;
    workload.start(1, { kind: "put", key: "k0", value: "final" });
    cluster.runUntil(() => {
      workload.tick();
      return workload.idle();
    }, healSteps);
    if (workload.stats.completed === completed) {
      throw new InvariantViolation("liveness", "the healed cluster did not accept a write");
    }
    // Final reads of every key, through ReadIndex at random members.
    for (let k = 0; k < 4; k++) {
      workload.start(1, { kind: "get", key: "k" + k });
      const done = cluster.runUntil(() => {
        workload.tick();
        return workload.idle();
      }, healSteps);
      if (!done) throw new InvariantViolation("liveness", `final read of k${k} did not complete`);
    }
    checkCore();
    const lin = checkLinearizable(workload.history);
    if (!lin.ok) {
      throw new InvariantViolation(
        "linearizability",
        `history of key ${lin.key} is not linearizable:\n${formatHistory(lin.operations!)}`,
      );
    }
    summary.inconclusive = !!lin.inconclusive;
  } catch (e) {
    Object.assign(summary, collect(cluster, workload));
    const error = e instanceof InvariantViolation ? e.message : `exception: ${(e as Error).stack}`;
    return { seed, ok: false, error, summary };
  }
  Object.assign(summary, collect(cluster, workload));
  return { seed, ok: true, summary };
}

function frngDrift(rng: Prng, max: number): number {
  return max === 0 ? 0 : rng.float() * max;
}

function collect(cluster: SimCluster, workload: Workload): Record<string, number> {
  return {
    steps: cluster.now,
    ops: workload.history.length,
    completed: workload.stats.completed,
    gaveUp: workload.stats.gaveUp,
    registrations: workload.stats.registrations,
    expired: workload.stats.expired,
    notApplied: workload.stats.notApplied,
    crashes: cluster.stats.crashes,
    snapshotsTaken: cluster.stats.snapshotsTaken,
    snapshotsInstalled: cluster.stats.snapshotsInstalled,
    restartsAheadOfCommit: cluster.stats.restartsAheadOfCommit,
    leaderTerms: cluster.checker.leaderTerms(),
    maxApplied: cluster.checker.maxApplied(),
    checks: cluster.checker.checks,
    messages: cluster.net.stats.sent,
  };
}

/** One line per node: role, term, indexes, configuration. */
export function describe(cluster: SimCluster): string {
  const lines: string[] = [];
  for (const node of cluster.nodes.values()) {
    if (!node.raw) {
      lines.push(`node ${node.id}: ${node.stopped ? "stopped" : "down"}`);
      continue;
    }
    const st = node.raw.status();
    const pr = st.progress
      ? " progress " +
        [...st.progress].map(([id, p]) => `${id}:${p.state}/${p.match}/${p.next}`).join(" ")
      : "";
    lines.push(
      `node ${node.id}: ${st.role} term ${st.term} lead ${st.lead} commit ${st.commit} applied ${node.kv.applied} ` +
        `log [${st.firstIndex}, ${st.lastIndex}] voters [${st.conf.voters}] out [${st.conf.votersOutgoing}] ` +
        `learners [${st.conf.learners}]${pr}`,
    );
  }
  return lines.join("\n");
}

/** The lowest applied index among the members of the leader's configuration (-1: no leader). */
function slowestApplied(cluster: SimCluster): number {
  const leader = cluster.leader();
  if (!leader?.raw) return -1;
  const st = leader.raw.status();
  let min = Infinity;
  for (const id of [...st.conf.voters, ...st.conf.learners]) {
    min = Math.min(min, cluster.nodes.get(id)?.kv.applied ?? -1);
  }
  return min;
}

/** True when a leader exists and every member of its configuration is up, caught up and in the
 * same state. */
function converged(cluster: SimCluster): boolean {
  const leader = cluster.leader();
  if (!leader?.raw) return false;
  const st = leader.raw.status();
  if (st.conf.votersOutgoing.length > 0) return false;
  if (leader.kv.applied !== st.commit || st.commit !== st.lastIndex) return false;
  const fp = leader.kv.fingerprint();
  for (const id of [...st.conf.voters, ...st.conf.learners]) {
    const n = cluster.nodes.get(id);
    if (!n?.raw || n.kv.applied !== leader.kv.applied || n.kv.fingerprint() !== fp) return false;
  }
  return true;
}

function faultStep(cluster: SimCluster, p: Profile, rng: Prng, trace: (m: string) => void): void {
  const members = cluster.memberIds();
  if (rng.chance(p.partitionRate)) {
    const kind = rng.int(5);
    if (kind === 0 || kind === 4) {
      // Cut the leader off with a minority, its clock slowed down: the most dangerous case
      // for reads (an old leader that does not know it was deposed).
      const leader = cluster.leader();
      if (leader && kind === 4) {
        const minority = members.filter((id) => id !== leader.id && rng.chance(0.25))
          .slice(0, Math.max(0, Math.floor((members.length - 1) / 2) - 1));
        const group = [leader.id, ...minority];
        cluster.net.partition(group, members.filter((id) => !group.includes(id)));
        if (p.clockDrift > 0) leader.clockDrift = Math.max(leader.clockDrift, rng.float() * 0.8);
        trace(`cut leader off: [${group}] (drift ${leader.clockDrift.toFixed(2)})`);
        return;
      }
      const id = leader && rng.chance(0.5) ? leader.id : rng.pick(members);
      cluster.net.isolate(id, members);
    } else if (kind === 1) {
      const group = members.filter(() => rng.chance(0.4));
      const others = members.filter((id) => !group.includes(id));
      cluster.net.partition(group, others);
      trace(`partition [${group}] | [${others}]`);
    } else if (kind === 2) {
      const a = rng.pick(members);
      const b = rng.pick(members);
      if (a !== b) cluster.net.cutOneWay(a, b);
      trace(`cut ${a} -> ${b}`);
    } else {
      cluster.net.healAll();
      trace("heal");
    }
  }
  if (cluster.net.hasCuts() && rng.chance(p.partitionRate)) {
    cluster.net.healAll();
    trace("heal");
  }
  if (p.leaderChurn > 0 && rng.chance(p.leaderChurn)) {
    const leader = cluster.leader();
    const st = leader?.raw?.status();
    if (leader && st && st.lastIndex > st.commit) {
      const down = members.length - cluster.liveIds().length;
      if (rng.chance(0.5) && down < Math.floor(members.length / 2)) {
        cluster.crash(leader.id);
        trace(`crash leader ${leader.id} with uncommitted entries`);
      } else {
        cluster.net.isolate(leader.id, members);
        trace(`cut off leader ${leader.id} with uncommitted entries`);
      }
    }
  }
  if (rng.chance(p.crashRate)) {
    const up = cluster.liveIds();
    const down = members.length - up.length;
    if (up.length > 0 && down < Math.floor(members.length / 2) + (rng.chance(0.1) ? 1 : 0)) {
      const leader = cluster.leader();
      const id = leader && rng.chance(0.4) ? leader.id : rng.pick(up);
      cluster.crash(id);
      trace(`crash ${id}`);
    }
  }
  if (rng.chance(p.crashRate * 2)) {
    const down = members.filter((id) => !cluster.node(id).up);
    if (down.length > 0) {
      const id = rng.pick(down);
      cluster.restart(id);
      trace(`restart ${id}`);
    }
  }
  if (rng.chance(p.transferRate)) {
    const leader = cluster.leader();
    if (leader?.raw) {
      const to = rng.pick(leader.raw.status().conf.voters);
      leader.raw.transferLeader(to);
      trace(`transfer ${leader.id} -> ${to}`);
    }
  }
}

/** Drives membership changes: add learners, promote them, demote and remove voters (the leader
 * too), swap members in one joint change; retries a change until the leader's configuration shows it. */
class Admin {
  #cluster: SimCluster;
  #trace: (m: string) => void;
  #intent: { cc: ConfChange; desc: string } | null = null;
  #nextPropose = 0;
  #nextId = 100;
  #admitted = new Set<NodeId>();
  #stopAt = new Map<NodeId, number>();
  #lastConfIndex = 0;
  /** Nodes removed from the configuration (never added back). */
  #gone = new Set<NodeId>();
  #removals: { ids: NodeId[]; index: number; voters: NodeId[] }[] = [];

  constructor(cluster: SimCluster, trace: (m: string) => void) {
    this.#cluster = cluster;
    this.#trace = trace;
    const prev = cluster.listener;
    cluster.listener = {
      ...prev,
      onConfChange: (node, entry, conf) => {
        prev.onConfChange?.(node, entry, conf);
        trace(
          `node ${node.id} applied conf change at ${entry.index}: voters [${conf.voters}] out [${conf.votersOutgoing}] learners [${conf.learners}]`,
        );
        // Restarted nodes replay old changes: only the newest configuration counts.
        if (entry.index <= this.#lastConfIndex) return;
        this.#lastConfIndex = entry.index;
        this.#onConf(conf, entry.index);
      },
    };
    for (const id of cluster.memberIds()) this.#admitted.add(id);
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
    const removed = [...this.#admitted].filter((id) => !inConf.has(id) && !this.#stopAt.has(id));
    for (const id of removed) this.#gone.add(id);
    if (removed.length > 0) this.#removals.push({ ids: removed, index, voters: conf.voters });
  }

  /** Schedules the shutdown of removed nodes once every voter of the new configuration has
   * applied their removal and made its commit durable. Stopping them as soon as any node applied it can strand the new
   * configuration: a voter that restarts with a lower durable commit is back in the joint
   * configuration and needs the departed nodes to commit (found by seed 1000117). */
  #scheduleStops(): void {
    const cl = this.#cluster;
    this.#removals = this.#removals.filter((r) => {
      // Applied is not enough when commit-only hard states are not synced: a voter that
      // restarts with an older durable commit is back in the joint configuration.
      const applied = r.voters.every((id) => {
        const n = cl.nodes.get(id);
        return !!n?.raw && n.kv.applied >= r.index &&
          n.store.durableHardState().commit >= r.index;
      });
      if (!applied) return true;
      for (const id of r.ids) {
        if (!this.#stopAt.has(id)) this.#stopAt.set(id, cl.now + cl.rng.int(30));
      }
      return false;
    });
  }

  /** Stops removed nodes that are due; keeps pushing the current intent. */
  finish(): void {
    this.#reap();
    if (this.#intent) this.#push();
  }

  #reap(): void {
    this.#scheduleStops();
    for (const [id, at] of this.#stopAt) {
      if (at <= this.#cluster.now && !this.#cluster.node(id).stopped) {
        this.#cluster.stop(id);
        this.#trace(`stop removed node ${id}`);
      }
    }
  }

  step(rng: Prng): void {
    this.#reap();
    if (!this.#intent && rng.chance(0.02)) this.#intent = this.#choose(rng);
    if (this.#intent) this.#push();
  }

  #choose(rng: Prng): { cc: ConfChange; desc: string } | null {
    const leader = this.#cluster.leader();
    if (!leader?.raw) return null;
    const conf = leader.raw.status().conf;
    if (conf.votersOutgoing.length > 0) return null;
    const ctx = new Uint8Array(0);
    // A leader that has not applied the latest change may still list removed nodes: ids are
    // never reused, so those are left alone (seed 5000229 re-added a removed, stopped node).
    const voters = conf.voters.filter((id) => !this.#gone.has(id));
    const learners = conf.learners.filter((id) => !this.#gone.has(id));
    const choices: (() => { cc: ConfChange; desc: string })[] = [];
    if (voters.length + learners.length < 7) {
      choices.push(() => {
        const id = this.#nextId++;
        this.#cluster.addNode(id);
        return {
          cc: { changes: [{ type: ConfChangeType.AddLearner, nodeId: id }], context: ctx },
          desc: `add learner ${id}`,
        };
      });
    }
    if (learners.length > 0 && voters.length < 5) {
      const id = rng.pick(learners);
      choices.push(() => ({
        cc: { changes: [{ type: ConfChangeType.AddNode, nodeId: id }], context: ctx },
        desc: `promote ${id}`,
      }));
    }
    if (voters.length > 3 || (voters.length > 1 && rng.chance(0.2))) {
      // Removing the leader is a case of its own.
      const id = rng.chance(0.4) && voters.includes(leader.id) ? leader.id : rng.pick(voters);
      choices.push(() => ({
        cc: { changes: [{ type: ConfChangeType.RemoveNode, nodeId: id }], context: ctx },
        desc: `remove voter ${id}`,
      }));
    }
    if (learners.length > 0) {
      const id = rng.pick(learners);
      choices.push(() => ({
        cc: { changes: [{ type: ConfChangeType.RemoveNode, nodeId: id }], context: ctx },
        desc: `remove learner ${id}`,
      }));
    }
    if (voters.length > 3 && voters.length + learners.length < 7) {
      // Demote a voter (possibly the leader) to a learner.
      const id = rng.chance(0.3) && voters.includes(leader.id) ? leader.id : rng.pick(voters);
      choices.push(() => ({
        cc: { changes: [{ type: ConfChangeType.AddLearner, nodeId: id }], context: ctx },
        desc: `demote ${id}`,
      }));
    }
    if (learners.length > 0 && voters.length >= 3) {
      // Replace a voter by a learner in one joint change.
      const add = rng.pick(learners);
      const remove = rng.pick(voters);
      choices.push(() => ({
        cc: {
          changes: [
            { type: ConfChangeType.AddNode, nodeId: add },
            { type: ConfChangeType.RemoveNode, nodeId: remove },
          ],
          context: ctx,
        },
        desc: `replace ${remove} by ${add}`,
      }));
    }
    if (choices.length === 0) return null;
    const intent = rng.pick(choices)();
    this.#trace(`intent: ${intent.desc}`);
    return intent;
  }

  #push(): void {
    const cl = this.#cluster;
    const leader = cl.leader();
    if (!leader?.raw) return;
    const conf = leader.raw.status().conf;
    const intent = this.#intent!;
    if (conf.votersOutgoing.length === 0 && satisfied(intent.cc, conf)) {
      this.#trace(`done: ${intent.desc}`);
      this.#intent = null;
      return;
    }
    if (cl.now < this.#nextPropose || conf.votersOutgoing.length > 0) return;
    this.#nextPropose = cl.now + 40;
    try {
      leader.raw.proposeConfChange(intent.cc);
      this.#trace(`proposed at ${leader.id}: ${intent.desc}`);
    } catch (e) {
      this.#trace(`propose failed: ${(e as Error).message}`);
      // A change that became impossible (e.g. its node was removed meanwhile) is dropped.
      if ((e as Error).name === "InvalidConfChangeError") this.#intent = null;
    }
  }
}

function satisfied(cc: ConfChange, conf: ConfState): boolean {
  return cc.changes.every((c) => {
    switch (c.type) {
      case ConfChangeType.AddNode:
        return conf.voters.includes(c.nodeId);
      case ConfChangeType.AddLearner:
        return conf.learners.includes(c.nodeId);
      case ConfChangeType.RemoveNode:
        return !conf.voters.includes(c.nodeId) && !conf.learners.includes(c.nodeId);
    }
  });
}
