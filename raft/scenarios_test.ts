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
import { type ConfChange, ConfChangeType, MessageType, type NodeId } from "./types.ts";

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

/** Makes `id` campaign and waits until it leads. */
function elect(c: SimCluster, id: NodeId): void {
  c.node(id).raw!.campaign();
  assert.ok(c.runUntil(() => c.leader()?.id === id, 200), `node ${id} did not become leader`);
}

function status(c: SimCluster, id: NodeId) {
  return c.node(id).raw!.status();
}

let seq = 0;
/** Proposes put(key, value) at node `id` (must be leader). */
function put(
  c: SimCluster,
  id: NodeId,
  key: string,
  value: string,
): { index: number; term: number } {
  return c.node(id).raw!.propose(
    encodeCommand({ kind: "put", clientId: 1, seq: ++seq, key, value }),
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
