/**
 * Scenarios named after known Raft failures, scripted on the deterministic simulator. Each
 * asserts the scenario's specific outcome; the simulator's invariant checker (election safety,
 * log matching, leader completeness, state machine safety, commit monotonicity) runs after every
 * step as well.
 */
import assert from "node:assert/strict";
import { NotLeaderError } from "./errors.ts";
import { SimCluster, type SimNode } from "./sim/cluster.ts";
import { encodeCommand } from "./sim/kv.ts";
import { Workload } from "./sim/workload.ts";
import { describe } from "./sim/simulation.ts";
import { checkLinearizable, formatHistory } from "./linearizability.ts";
import { type ConfChange, ConfChangeType, message, MessageType, type NodeId } from "./types.ts";

interface Opts {
  snapshotThreshold?: number;
  maxInflightMsgs?: number;
  maxSizePerMsg?: number;
  electionTick?: number;
}

function newCluster(n: number, opts: Opts = {}): SimCluster {
  const voters = Array.from({ length: n }, (_, i) => i + 1);
  const c = new SimCluster({ seed: 7, voters, ...opts });
  c.processReadies(); // apply the bootstrap configuration
  return c;
}

function ids(c: SimCluster): NodeId[] {
  return c.memberIds();
}

/** Makes `id` campaign (again every 10 steps, as a lost pre-vote round may only teach it the
 * current term) and waits until it leads. */
function elect(c: SimCluster, id: NodeId): void {
  assert.ok(tryElect(c, id), `node ${id} did not become leader`);
}

function tryElect(c: SimCluster, id: NodeId, rounds = 10): boolean {
  for (let i = 0; i < rounds; i++) {
    c.node(id).raw!.campaign();
    if (c.runUntil(() => c.leader()?.id === id && status(c, id).role === "leader", 10)) return true;
  }
  return false;
}

/** Crashes and restarts `id` (it forgets the leader it followed). */
function bounce(c: SimCluster, id: NodeId): void {
  c.crash(id);
  c.restart(id);
}

function status(c: SimCluster, id: NodeId) {
  return c.node(id).raw!.status();
}

let seq = 0;
/** Proposes put(key, value) at node `id` (must be leader), without a session. */
function put(
  c: SimCluster,
  id: NodeId,
  key: string,
  value: string,
): { index: number; term: number } {
  return c.node(id).raw!.propose(
    encodeCommand({ kind: "put", key, value }),
  );
}

/** Proposes at whoever leads, stepping between proposals, `n` times. */
function load(c: SimCluster, n: number, key = "k"): void {
  for (let i = 0; i < n; i++) {
    const leader = c.leader();
    if (leader) {
      try {
        put(c, leader.id, key, `v${i}`);
      } catch (e) {
        if (!(e instanceof NotLeaderError) && (e as Error).name !== "ProposalDroppedError") throw e;
      }
    }
    c.step();
  }
}

function caughtUp(c: SimCluster, nodes: NodeId[]): boolean {
  const leader = c.leader();
  if (!leader) return false;
  const st = leader.raw!.status();
  if (st.commit !== st.lastIndex) return false;
  return nodes.every((id) => {
    const n = c.nodes.get(id);
    return !!n?.raw && n.kv.applied === leader.kv.applied;
  });
}

function confChange(c: SimCluster, changes: ConfChange["changes"]): void {
  const cc: ConfChange = { changes, context: new Uint8Array(0) };
  const ok = c.runUntil(() => {
    const leader = c.leader();
    if (!leader) return false;
    try {
      leader.raw!.proposeConfChange(cc);
      return true;
    } catch {
      return false;
    }
  }, 500);
  assert.ok(ok, "conf change could not be proposed");
}

function conf(node: SimNode) {
  return node.raw!.status().conf;
}

function waitConf(c: SimCluster, pred: (voters: NodeId[], learners: NodeId[]) => boolean): void {
  const ok = c.runUntil(() => {
    const leader = c.leader();
    if (!leader) return false;
    const cs = conf(leader);
    return cs.votersOutgoing.length === 0 && pred(cs.voters, cs.learners);
  }, 1000);
  assert.ok(ok, "configuration was not reached");
}

Deno.test("regression: appends lost while the in-flight window is full do not stall a follower", () => {
  const c = newCluster(3, { maxInflightMsgs: 2, maxSizePerMsg: 1 });
  elect(c, 1);
  c.run(5);
  c.net.filter = (m) => !(m.type === MessageType.App && m.to === 3);
  load(c, 10);
  c.run(5);
  c.net.filter = null;
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3]), 300), "node 3 never caught up");
});

Deno.test("a follower far behind the log's start catches up by snapshot without livelock", () => {
  const c = newCluster(3, { snapshotThreshold: 3 });
  elect(c, 1);
  c.run(5);
  c.net.isolate(3, ids(c));
  load(c, 12);
  c.run(5);
  assert.ok(c.node(1).store.firstIndex() > c.node(3).store.lastIndex() + 1);
  // Node 3 comes back and installs a snapshot, but its acknowledgement is held back while the
  // leader moves on and compacts past that snapshot.
  c.net.healAll();
  c.net.filter = (m) => !(m.type === MessageType.AppResp && m.from === 3);
  assert.ok(c.runUntil(() => c.node(3).store.snapshotMeta().index > 0, 100));
  const first = c.node(3).store.snapshotMeta().index;
  load(c, 12);
  c.run(5);
  assert.ok(c.node(1).store.firstIndex() > first + 1);
  c.net.filter = null;
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3]), 300), "node 3 never caught up");
  assert.ok(c.node(3).store.snapshotMeta().index > first, "node 3 needed a second snapshot");
});

Deno.test("regression: a node added after the leader compacted its log catches up from an older snapshot", () => {
  const c = newCluster(3, { snapshotThreshold: 3 });
  elect(c, 1);
  load(c, 10);
  c.run(5);
  assert.ok(c.node(1).store.snapshotMeta().index > 0);
  // The leader's latest snapshot predates the change that adds node 4, and the cluster is
  // quiet afterwards, so no newer snapshot will be taken.
  c.snapshotThreshold = Infinity;
  c.addNode(4);
  confChange(c, [{ type: ConfChangeType.AddLearner, nodeId: 4 }]);
  waitConf(c, (_voters, learners) => learners.includes(4));
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4]), 300), "node 4 never caught up");
  assert.deepEqual(conf(c.node(4)).learners, [4]);
});

Deno.test("Figure 8: an old-term entry on a majority is not committed and may be overwritten", () => {
  // Raft paper §5.4.2, Figure 8 (a)-(d). Clocks are frozen: elections happen only on request.
  const c = newCluster(5, { maxSizePerMsg: 1 });
  for (const id of [1, 2, 3, 4, 5]) c.frozen.add(id);
  elect(c, 1);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 50));
  const t2 = status(c, 1).term;
  // (a) S1 leads term t2 and replicates X at index i to S2 only.
  c.net.partition([1, 2], [3, 4, 5]);
  const x = put(c, 1, "k", "X");
  c.run(5);
  const i = x.index;
  assert.equal(c.node(2).store.lastIndex(), i);
  assert.ok(status(c, 1).commit < i);
  // (b) S1 crashes; S5 wins term t3 with S3 and S4 and writes its own entry at index i.
  c.crash(1);
  c.net.healAll();
  c.net.cut(5, 2);
  bounce(c, 3);
  bounce(c, 4);
  elect(c, 5);
  const t3 = status(c, 5).term;
  assert.ok(t3 > t2);
  c.net.isolate(5, [1, 2, 3, 4]);
  c.run(3);
  assert.equal(c.node(5).store.term(i), t3);
  c.crash(5);
  // (c) S1 restarts and wins term t4 with S3 and S4; it replicates X to S3 and S4, so X is on a
  // majority, but its own no-op of term t4 reaches S2 only.
  c.net.healAll();
  c.restart(1);
  let t4 = 0;
  // Drop appends of term-t4 entries to S3 and S4 once they hold X (earlier ones must arrive so
  // that they reject them and the leader probes back to X).
  c.net.filter = (m) =>
    !(m.type === MessageType.App && (m.to === 3 || m.to === 4) && t4 > 0 &&
      m.entries.some((e) => e.term === t4) && c.node(m.to).store.lastIndex() >= i);
  c.node(1).raw!.campaign();
  assert.ok(
    c.runUntil(() => {
      if (c.leader()?.id === 1 && t4 === 0) t4 = status(c, 1).term;
      return t4 > 0;
    }, 100) || tryElect(c, 1),
  );
  if (t4 === 0) t4 = status(c, 1).term;
  c.run(20);
  for (const id of [1, 2, 3, 4]) assert.equal(c.node(id).store.term(i), t2, `X on node ${id}`);
  // §5.4.2: counting replicas does not commit an entry of an earlier term.
  assert.ok(status(c, 1).commit < i, "X must not be committed by counting replicas");
  // (d) S1 crashes; S5 restarts and wins with S3 and S4 (its last term t3 beats their t2), then
  // overwrites X everywhere. That is only safe because X was never committed.
  c.crash(1);
  c.net.filter = null;
  c.restart(5);
  bounce(c, 3);
  bounce(c, 4);
  elect(c, 5);
  c.restart(1);
  for (const id of [1, 2, 3, 4, 5]) c.frozen.delete(id);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 300));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(c.node(id).store.term(i), t3);
  for (const id of [1, 2, 3, 4, 5]) assert.equal(c.node(id).kv.get("k"), null, "X was applied");
});

Deno.test("Figure 8: once an entry of the leader's term commits, the old-term entry before it is safe", () => {
  // Figure 8 (e): S1 replicates its current-term entry to a majority before crashing, which
  // commits X; S5 can then no longer win an election.
  const c = newCluster(5, { maxSizePerMsg: 1 });
  for (const id of [1, 2, 3, 4, 5]) c.frozen.add(id);
  elect(c, 1);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 50));
  c.net.partition([1, 2], [3, 4, 5]);
  const x = put(c, 1, "k", "X");
  c.run(5);
  c.crash(1);
  c.net.healAll();
  c.net.cut(5, 2);
  bounce(c, 3);
  bounce(c, 4);
  elect(c, 5);
  c.net.isolate(5, [1, 2, 3, 4]);
  c.run(3);
  c.crash(5);
  c.net.healAll();
  c.restart(1);
  elect(c, 1);
  assert.ok(c.runUntil(() => status(c, 1).commit > x.index, 50), "X and the no-op commit");
  c.crash(1);
  c.restart(5);
  bounce(c, 3);
  bounce(c, 4);
  assert.equal(tryElect(c, 5, 5), false, "S5 must not win: a majority holds newer entries");
  c.restart(1);
  for (const id of [1, 2, 3, 4, 5]) c.frozen.delete(id);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 500));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(c.node(id).kv.get("k"), "X");
});

/** Registers a read at `id`; returns a function giving the value once served (undefined before). */
function read(c: SimCluster, id: NodeId, key: string): () => string | null | undefined {
  const tag = `read-${++seq}`;
  let result: string | null | undefined = undefined;
  const prev = c.listener.onRead;
  c.listener.onRead = (node, k) => {
    prev?.(node, k);
    if (k === tag) result = node.kv.get(key);
  };
  c.readIndex(id, tag);
  return () => result;
}

Deno.test("an old leader cut off with a minority serves no stale read, commits nothing and steps down", () => {
  const c = newCluster(5);
  elect(c, 1);
  put(c, 1, "k", "old");
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 100));
  const oldTerm = status(c, 1).term;
  c.net.partition([1, 2], [3, 4, 5]);
  // The old leader accepts a write and a read but can complete neither.
  const lost = put(c, 1, "k", "lost");
  const staleRead = read(c, 1, "k");
  // The majority elects a leader and commits a new value.
  assert.ok(c.runUntil(() => {
    const l = c.leader();
    return !!l && l.id !== 1 && l.id !== 2;
  }, 200));
  const newLeader = c.leader()!.id;
  const w = put(c, newLeader, "k", "new");
  assert.ok(c.runUntil(() => c.node(newLeader).kv.applied >= w.index, 100));
  // CheckQuorum: the old leader notices it lost its quorum and steps down.
  assert.ok(c.runUntil(() => status(c, 1).role !== "leader", 100), "old leader never stepped down");
  assert.equal(status(c, 1).term, oldTerm, "stepping down must not need a newer term");
  c.run(50);
  assert.ok(status(c, 1).commit < lost.index, "the minority committed an entry");
  assert.equal(staleRead(), undefined, "the minority served a read");
  assert.equal(c.node(1).kv.get("k"), "old");
  // After healing, the uncommitted write is gone and reads see the new value everywhere.
  c.net.healAll();
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 300));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(c.node(id).kv.get("k"), "new");
  const fresh = read(c, 1, "k");
  assert.ok(c.runUntil(() => fresh() !== undefined, 100));
  assert.equal(fresh(), "new");
});

Deno.test("Pre-Vote: a node rejoining after a partition does not depose a healthy leader", () => {
  const c = newCluster(3);
  elect(c, 1);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3]), 100));
  const term = status(c, 1).term;
  c.net.isolate(3, ids(c));
  c.run(200); // twenty election timeouts: node 3 keeps trying pre-vote rounds
  assert.equal(status(c, 3).term, term, "pre-vote rounds must not raise the isolated node's term");
  load(c, 5);
  c.net.healAll();
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3]), 200));
  c.run(100);
  assert.equal(c.leader()?.id, 1);
  assert.equal(status(c, 1).term, term, "the leader was deposed");
});

Deno.test("without Pre-Vote the same rejoining node does depose the leader (the failure Pre-Vote prevents)", () => {
  const voters = [1, 2, 3];
  const c = new SimCluster({ seed: 7, voters, preVote: false });
  c.processReadies();
  elect(c, 1);
  assert.ok(c.runUntil(() => caughtUp(c, voters), 100));
  const term = status(c, 1).term;
  c.net.isolate(3, voters);
  c.run(200);
  assert.ok(status(c, 3).term > term + 1, "the isolated node inflates its term");
  c.net.healAll();
  assert.ok(c.runUntil(() => (c.leader() ? status(c, c.leader()!.id).term > term : false), 200));
  assert.ok(c.runUntil(() => caughtUp(c, voters), 300));
});

Deno.test("removing the leader: it steps down once the change commits and the rest carry on", () => {
  const c = newCluster(3, { snapshotThreshold: 10 });
  elect(c, 1);
  load(c, 10);
  confChange(c, [{ type: ConfChangeType.RemoveNode, nodeId: 1 }]);
  waitConf(c, (voters) => !voters.includes(1));
  assert.ok(
    c.runUntil(() => {
      const l = c.leader();
      return !!l && l.id !== 1;
    }, 300),
    "no new leader after removing the old one",
  );
  assert.notEqual(status(c, 1).role, "leader");
  c.stop(1);
  load(c, 10);
  assert.ok(c.runUntil(() => caughtUp(c, [2, 3]), 300));
  assert.deepEqual(conf(c.leader()!).voters, [2, 3]);
  assert.equal(c.node(2).kv.fingerprint(), c.node(3).kv.fingerprint());
  assert.equal(c.node(2).kv.get("k"), "v9");
});

/** The leader's applied index (infinity while there is no leader, so waits keep going). */
function leaderApplied(c: SimCluster): number {
  return c.leader()?.kv.applied ?? Infinity;
}

/** Steps with the clients running until `pred` holds. */
function drive(c: SimCluster, w: Workload, pred: () => boolean, maxSteps: number): boolean {
  return c.runUntil(() => {
    w.tick();
    return pred();
  }, maxSteps);
}

function newWorkload(c: SimCluster): Workload {
  return new Workload(c, {
    clients: 3,
    keys: 2,
    rate: 0.5,
    timeout: 40,
    maxAttempts: 10,
    readShare: 0.3,
    deleteShare: 0.1,
  });
}

/** Proposes a conf change at the leader (retrying) while the clients run, then waits for it. */
function changeUnderLoad(
  c: SimCluster,
  w: Workload,
  changes: ConfChange["changes"],
  done: (voters: NodeId[], learners: NodeId[]) => boolean,
): void {
  const cc: ConfChange = { changes, context: new Uint8Array(0) };
  let next = 0;
  const ok = drive(c, w, () => {
    const leader = c.leader();
    if (!leader) return false;
    const cs = conf(leader);
    if (cs.votersOutgoing.length === 0 && done(cs.voters, cs.learners)) return true;
    if (c.now >= next) {
      next = c.now + 50;
      try {
        leader.raw!.proposeConfChange(cc);
      } catch { /* in progress or not leader: retry later */ }
    }
    return false;
  }, 2000);
  assert.ok(ok, `change ${JSON.stringify(changes)} did not complete`);
}

/** Asserts the commit index keeps moving while the clients write. */
function watchProgress(c: SimCluster): () => number {
  let lastCommit = 0;
  let lastMove = c.now;
  let worst = 0;
  const prev = c.listener.onApply;
  c.listener.onApply = (node, entry, result) => {
    prev?.(node, entry, result);
    if (entry.index > lastCommit) {
      worst = Math.max(worst, c.now - lastMove);
      lastCommit = entry.index;
      lastMove = c.now;
    }
  };
  return () => worst;
}

function finishAndCheck(c: SimCluster, w: Workload, members: NodeId[]): void {
  w.issuing = false;
  assert.ok(drive(c, w, () => w.idle() && caughtUp(c, members), 1000), "clients did not finish");
  const fp = c.node(members[0]).kv.fingerprint();
  for (const id of members) assert.equal(c.node(id).kv.fingerprint(), fp, `node ${id} diverged`);
  const lin = checkLinearizable(w.history);
  assert.ok(lin.ok, lin.ok ? "" : formatHistory(lin.operations!));
  assert.ok(w.stats.completed > 50, `only ${w.stats.completed} operations completed`);
}

Deno.test("adding a node under load: it catches up by snapshot and becomes a voter without stalling writes", () => {
  const c = newCluster(3, { snapshotThreshold: 8 });
  const w = newWorkload(c);
  const stall = watchProgress(c);
  elect(c, 1);
  drive(c, w, () => false, 100);
  c.addNode(4);
  changeUnderLoad(c, w, [{ type: ConfChangeType.AddLearner, nodeId: 4 }], (_v, l) => l.includes(4));
  assert.ok(drive(c, w, () => c.node(4).kv.applied >= leaderApplied(c) - 2, 500));
  changeUnderLoad(c, w, [{ type: ConfChangeType.AddNode, nodeId: 4 }], (v) => v.includes(4));
  drive(c, w, () => false, 100);
  finishAndCheck(c, w, [1, 2, 3, 4]);
  assert.ok(c.stats.snapshotsInstalled > 0, "node 4 should have needed a snapshot");
  assert.ok(stall() < 30, `writes stalled for ${stall()} steps`);
});

Deno.test("replacing every member one at a time keeps the cluster available and linearizable", () => {
  const c = newCluster(3, { snapshotThreshold: 10 });
  const w = newWorkload(c);
  const stall = watchProgress(c);
  elect(c, 2);
  drive(c, w, () => false, 50);
  for (const old of [1, 2, 3]) { // node 2 leads when its turn comes
    const fresh = old + 3;
    c.addNode(fresh);
    changeUnderLoad(
      c,
      w,
      [{ type: ConfChangeType.AddLearner, nodeId: fresh }],
      (_v, l) => l.includes(fresh),
    );
    assert.ok(drive(c, w, () => c.node(fresh).kv.applied >= leaderApplied(c) - 2, 500));
    changeUnderLoad(
      c,
      w,
      [{ type: ConfChangeType.AddNode, nodeId: fresh }],
      (v) => v.includes(fresh),
    );
    changeUnderLoad(
      c,
      w,
      [{ type: ConfChangeType.RemoveNode, nodeId: old }],
      (v) => !v.includes(old),
    );
    const voters = conf(c.leader()!).voters;
    // Shut the old member down once it no longer leads and every remaining voter has applied
    // its removal.
    assert.ok(
      drive(c, w, () => {
        const l = c.leader();
        return !!l && l.id !== old && voters.every((id) => c.node(id).kv.applied >= l.kv.applied);
      }, 500),
      `removed node ${old} kept leading:\n${describe(c)}`,
    );
    c.stop(old);
  }
  assert.deepEqual(conf(c.leader()!).voters, [4, 5, 6]);
  drive(c, w, () => false, 100);
  finishAndCheck(c, w, [4, 5, 6]);
  assert.ok(stall() < 60, `writes stalled for ${stall()} steps`);
});

Deno.test("lease reads: a leader cut off from its quorum stops serving them before a new leader can exist", () => {
  // Equal clocks (no drift): followers refuse to elect anyone for an election timeout after the
  // last heartbeat they saw, so that is all the lease a leader may count on. Checking quorum
  // only once per election timeout would let the old leader serve reads for up to two.
  for (let s = 1; s <= 20; s++) {
    const all = [1, 2, 3];
    const c = new SimCluster({ seed: s, voters: all, leaseRead: true });
    assert.ok(c.runUntil(() => c.leader() !== null, 200));
    const old = c.leader()!.id;
    put(c, old, "k", "old");
    c.run(5 + (s % 10)); // cut at different points of the check-quorum cycle
    const others = all.filter((id) => id !== old);
    c.net.partition([old], others);
    let written = 0;
    let newLeader = 0;
    for (let i = 0; i < 80; i++) {
      c.step();
      newLeader ||= others.find((id) => status(c, id).role === "leader") ?? 0;
      if (newLeader && !written && status(c, newLeader).commit === status(c, newLeader).lastIndex) {
        written = put(c, newLeader, "k", "new").index;
      }
      if (written && c.node(newLeader).kv.applied >= written) break;
    }
    assert.ok(written && c.node(newLeader).kv.applied >= written, `seed ${s}: no new write`);
    // The new value is committed and acknowledged; the old leader must not return the old one.
    const r = read(c, old, "k");
    c.processReadies();
    c.run(30);
    assert.notEqual(r(), "old", `seed ${s}: the cut-off leader served a stale lease read`);
  }
});

Deno.test("lease reads: a restarted follower does not vote while a lease it may have acknowledged runs", () => {
  // A follower that acknowledged the leader's heartbeat and then restarted has forgotten it; if
  // it voted at once, a new leader could be elected while the old one still trusts its lease.
  const all = [1, 2, 3, 4, 5];
  const c = new SimCluster({ seed: 3, voters: all, leaseRead: true, electionTick: 20 });
  assert.ok(c.runUntil(() => c.leader() !== null, 300));
  const old = c.leader()!.id;
  const [a, b, d, e] = all.filter((id) => id !== old);
  put(c, old, "k", "old");
  assert.ok(c.runUntil(() => caughtUp(c, all), 100));
  // Nodes a and b lose the leader long enough to be ready to elect someone else.
  c.net.partition([old], [a, b]);
  c.run(45);
  assert.equal(c.leader()?.id, old);
  // The leader is cut off entirely right after a heartbeat round, and node d restarts. Node e
  // still honours the lease, so a can only win with d's vote.
  c.net.isolate(old, all);
  c.crash(d);
  c.restart(d);
  let written = 0;
  c.node(a).raw!.campaign();
  for (let i = 0; i < 30 && !written; i++) {
    c.step();
    if (status(c, a).role === "leader" && status(c, a).commit === status(c, a).lastIndex) {
      written = put(c, a, "k", "new").index;
    }
  }
  if (written) c.runUntil(() => c.node(a).kv.applied >= written, 10);
  const r = read(c, old, "k");
  c.processReadies();
  c.run(5);
  assert.notEqual(r(), "old", "the cut-off leader served a stale lease read");
  void b;
  void e;
});

Deno.test("regression: a joining node that installed an old snapshot accepts another one from a new leader", () => {
  // Seed 112640: node 100 joined, installed a snapshot that predates its addition, then a new
  // leader whose own snapshot also predated the addition had to send that one; node 100, no
  // longer "brand-new", refused it forever.
  const c = newCluster(3);
  elect(c, 1);
  load(c, 5);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3]), 100));
  c.snapshot(1);
  load(c, 3);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3]), 100));
  c.snapshot(2);
  const first = c.node(1).store.snapshotMeta().index;
  assert.ok(c.node(2).store.firstIndex() > first + 1);
  // Node 4 gets only node 1's snapshot, nothing else from it.
  c.addNode(4);
  c.net.filter = (m) =>
    !(m.from === 1 && m.to === 4 && m.type === MessageType.App &&
      c.node(4).store.snapshotMeta().index > 0);
  confChange(c, [{ type: ConfChangeType.AddLearner, nodeId: 4 }]);
  assert.ok(c.runUntil(() => c.node(4).store.snapshotMeta().index === first, 100));
  // Node 2 takes over; its oldest entry is past node 4's snapshot.
  c.net.isolate(4, [1]);
  c.node(1).raw!.transferLeader(2);
  assert.ok(c.runUntil(() => c.leader()?.id === 2, 100));
  c.net.filter = null;
  c.net.healAll();
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4]), 300), "node 4 never caught up");
  assert.deepEqual(conf(c.node(4)).learners, [4]);
});

Deno.test("regression: after removing the leader, the remaining voter learns the commit it missed and takes over", () => {
  // Sim seed 2000229: the leader of {1, 2} removed itself; node 2 held the entry leaving the
  // joint configuration but never learned it was committed, so it still needed node 1's vote.
  // Node 1 (restarted, no longer a member) held one more entry and refused that vote forever.
  const c = newCluster(2);
  elect(c, 1);
  load(c, 3);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2]), 100));
  const start = c.node(1).store.lastIndex();
  let leave = 0; // index of the entry leaving the joint configuration
  let extra = 0; // an entry node 2 never receives
  c.net.filter = (m) => {
    if (m.from !== 1 || m.to !== 2) return true;
    if (leave > 0 && m.commit >= leave) m.commit = leave - 1; // node 2 never learns it committed
    if (m.type === MessageType.TimeoutNow) return false; // the hand-off never happens
    return !(extra > 0 && m.entries.some((e) => e.index >= extra));
  };
  c.node(1).raw!.proposeConfChange({
    changes: [{ type: ConfChangeType.RemoveNode, nodeId: 1 }],
    context: new Uint8Array(0),
  });
  // The leader leaves the joint configuration on its own; right behind that entry it appends
  // two writes, the second of which never reaches node 2.
  assert.ok(c.runUntil(() => c.node(1).store.lastIndex() > start + 1, 50));
  leave = c.node(1).store.lastIndex();
  put(c, 1, "k", "a");
  extra = put(c, 1, "k", "b").index;
  assert.ok(c.runUntil(() => c.node(1).kv.applied >= leave, 50), "node 1 applies its removal");
  c.run(5);
  c.crash(1);
  c.restart(1);
  c.processReadies(); // re-apply the committed log
  assert.deepEqual(conf(c.node(1)).voters, [2]);
  assert.ok(status(c, 2).commit < leave);
  c.net.clear(); // what node 1 sent before crashing is lost
  c.net.filter = null;
  assert.ok(c.runUntil(() => c.leader()?.id === 2, 300), `no leader:\n${describe(c)}`);
  assert.ok(c.runUntil(() => caughtUp(c, [2]), 300));
  // The writes behind the leave entry never reached node 2, so they were never committed.
  assert.equal(c.node(2).kv.get("k"), "v2");
});

Deno.test("a follower commits only what the leader's append matched, never a stale tail after it", () => {
  // §5.3 with commit: an append that matches a prefix of a follower's log says nothing about
  // the follower's entries after it, which may be stale leftovers of an older term.
  const c = newCluster(5, { maxSizePerMsg: 1 });
  for (const id of [1, 2, 3, 4, 5]) c.frozen.add(id);
  elect(c, 1);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 100));
  const base = c.node(1).store.lastIndex();
  // Old leader 1: entry A reaches 2, 3 and 4; entry B reaches 3 only.
  // Node 3 is never told that A committed.
  c.net.filter = (m) => {
    if (m.from === 1 && m.to === 3) m.commit = Math.min(m.commit, base);
    return !(m.from === 1 && m.type === MessageType.App &&
      (m.to === 5 || (m.to !== 3 && m.entries.some((e) => e.index > base + 1))));
  };
  put(c, 1, "k", "A");
  c.run(5);
  put(c, 1, "k", "B");
  c.run(5);
  assert.equal(c.node(3).store.lastIndex(), base + 2);
  assert.equal(c.node(2).store.lastIndex(), base + 1);
  c.crash(1);
  c.net.filter = null;
  // Node 2 wins with 4 and 5 (node 3 still follows the old leader) and commits its no-op at
  // base + 2, where node 3 holds the stale B.
  bounce(c, 4);
  bounce(c, 5);
  c.net.cut(2, 3);
  elect(c, 2);
  assert.ok(c.runUntil(() => status(c, 2).commit >= base + 2, 50));
  const st = status(c, 2);
  // A legitimate but late append of node 2 reaches node 3: it covers A only.
  const termA = c.node(2).store.term(base + 1);
  c.node(3).raw!.step(message({
    type: MessageType.App,
    from: 2,
    to: 3,
    term: st.term,
    index: base,
    logTerm: c.node(2).store.term(base),
    entries: c.node(2).store.entries(base + 1, base + 2),
    commit: st.commit,
  }));
  c.processReadies(); // the invariant checker flags node 3 applying B at base + 2
  c.checkInvariants();
  assert.ok(status(c, 3).commit <= base + 1, "node 3 committed past the matched prefix");
  assert.equal(termA, c.node(3).store.term(base + 1));
  c.net.healAll();
  for (const id of [2, 3, 4, 5]) c.frozen.delete(id);
  c.restart(1);
  c.frozen.delete(1);
  assert.ok(c.runUntil(() => caughtUp(c, [1, 2, 3, 4, 5]), 300));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(c.node(id).kv.get("k"), "A");
});
