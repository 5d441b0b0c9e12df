// Membership changes by joint consensus (paper §6), learners, and the ConfChange codec.
import assert from "node:assert/strict";
import { decodeConfChange, encodeConfChange } from "./confchange_codec.ts";
import { ConfChangeInProgressError } from "./errors.ts";
import { jointCommitted, jointVote, majorityCommitted } from "./quorum.ts";
import { TestCluster } from "./test_cluster.ts";
import { ConfChangeType, MessageType, type NodeId } from "./types.ts";

const ctx = new Uint8Array(0);
const add = (nodeId: NodeId) => ({ type: ConfChangeType.AddNode, nodeId });
const remove = (nodeId: NodeId) => ({ type: ConfChangeType.RemoveNode, nodeId });
const learner = (nodeId: NodeId) => ({ type: ConfChangeType.AddLearner, nodeId });

Deno.test("§6 ConfChange encodes to binary and decodes back; malformed input is refused", () => {
  const cc = { changes: [add(4), remove(2), learner(9)], context: new Uint8Array([1, 2, 3]) };
  const b = encodeConfChange(cc);
  assert.deepEqual(decodeConfChange(b), cc);
  assert.throws(() => decodeConfChange(b.subarray(0, b.length - 1)), /ConfChange/);
  assert.throws(() => decodeConfChange(new Uint8Array([9, 0, 0, 0, 0, 0, 0, 0, 0])), /version/);
  assert.deepEqual(decodeConfChange(encodeConfChange({ changes: [], context: ctx })), {
    changes: [],
    context: ctx,
  });
});

Deno.test("§6 joint consensus needs separate majorities of C(old) and C(new)", () => {
  const old = new Set([1, 2, 3]);
  const nw = new Set([3, 4, 5]);
  const match = new Map([[1, 10], [2, 10], [3, 5], [4, 1], [5, 1]]);
  assert.equal(majorityCommitted(old, (id) => match.get(id)!), 10);
  assert.equal(jointCommitted(nw, old, (id) => match.get(id)!), 1);
  const votes = new Map([[1, true], [2, true], [3, false]]);
  assert.equal(jointVote(nw, old, votes), "pending");
  votes.set(4, true);
  votes.set(5, false);
  assert.equal(jointVote(nw, old, votes), "lost");
  votes.set(3, true);
  assert.equal(jointVote(nw, old, votes), "won");
  assert.equal(jointVote(new Set([1]), new Set(), new Map([[1, true]])), "won");
});

Deno.test("§6 adding a voter goes through C(old,new) then C(new) automatically", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.addMember(4, null);
  c.get(1).rn.proposeConfChange({ changes: [add(4)], context: ctx });
  c.stabilize();
  c.tick(3);
  for (const id of [1, 2, 3, 4]) {
    const m = c.get(id);
    assert.equal(m.confChanges.length >= 2, true, `node ${id} applied both entries`);
    const [joint, leave] = m.confChanges.slice(-2);
    assert.deepEqual(joint.conf.voters, [1, 2, 3, 4]);
    assert.deepEqual(joint.conf.votersOutgoing, [1, 2, 3]);
    assert.deepEqual(leave.conf.voters, [1, 2, 3, 4]);
    assert.deepEqual(leave.conf.votersOutgoing, []);
  }
  c.propose(1, "after");
  c.tick(2);
  assert.deepEqual(c.appliedData(4), ["after"]);
});

Deno.test("§6 in C(old,new) an entry commits only with a majority of the new configuration too", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.addMember(4, null);
  c.addMember(5, null);
  c.isolate(4);
  c.isolate(5);
  // The joint entry itself commits under C(old) and takes effect when applied.
  c.get(1).rn.proposeConfChange({
    changes: [remove(2), remove(3), add(4), add(5)],
    context: ctx,
  });
  c.tick(5);
  const joint = c.get(1).rn.status().conf;
  assert.deepEqual(joint.voters, [1, 4, 5]);
  assert.deepEqual(joint.votersOutgoing, [1, 2, 3]);
  // Now nodes 1, 2, 3 (a majority of C(old)) hold new entries, but C(new) = {1,4,5} has only
  // node 1: nothing commits, not even the automatic leave entry.
  const commit = c.get(1).rn.raft.log.committed;
  const index = c.propose(1, "p");
  c.tick(5);
  for (const id of [2, 3]) assert.ok(c.get(id).rn.raft.log.lastIndex() >= index);
  assert.equal(c.get(1).rn.raft.log.committed, commit);
  c.heal();
  c.tick(10);
  const st = c.get(1).rn.status();
  assert.deepEqual(st.conf.voters, [1, 4, 5]);
  assert.deepEqual(st.conf.votersOutgoing, []);
  assert.ok(st.commit >= index);
  c.remove(2);
  c.remove(3);
  c.propose(1, "x");
  c.tick(2);
  assert.deepEqual(c.appliedData(5), ["p", "x"]);
});

Deno.test("§6 only one membership change at a time", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.addMember(4, null);
  c.isolate(2);
  c.isolate(3);
  c.get(1).rn.proposeConfChange({ changes: [learner(4)], context: ctx });
  assert.throws(
    () => c.get(1).rn.proposeConfChange({ changes: [learner(5)], context: ctx }),
    ConfChangeInProgressError,
  );
});

Deno.test("§6 a leader removed by C(new) steps down once it is committed, handing off first", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  let timeoutNow = 0;
  c.filter = (m) => {
    if (m.type === MessageType.TimeoutNow && m.from === 1) timeoutNow++;
    return true;
  };
  c.get(1).rn.proposeConfChange({ changes: [remove(1)], context: ctx });
  c.stabilize();
  c.tick(2);
  assert.notEqual(c.get(1).rn.raft.role, "leader");
  assert.equal(timeoutNow, 1, "leadership handed to a caught-up voter of C(new)");
  c.remove(1);
  const l = c.waitLeader(300, [2, 3]);
  assert.deepEqual(c.get(l).rn.status().conf.voters, [2, 3]);
  c.propose(l, "y");
  c.tick(2);
  assert.deepEqual(c.appliedData(2), ["y"]);
});

Deno.test("§6 a removed leader cut off from C(new) accepts no proposals and hands off later", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.get(1).rn.proposeConfChange({ changes: [remove(1)], context: ctx });
  // The commit of C(new) reaches nobody: node 1 applies it alone.
  c.filter = (m) => !(m.from === 1 && (m.type === MessageType.TimeoutNow || m.commit >= 4));
  c.stabilize();
  assert.equal(c.get(1).rn.status().conf.voters.includes(1), false);
  assert.throws(() => c.get(1).rn.propose(new Uint8Array([1])));
  c.filter = null;
  c.tick(15);
  const l = c.leader([2, 3]);
  assert.ok(l === 2 || l === 3);
  assert.notEqual(c.get(1).rn.raft.role, "leader");
});

Deno.test("§6 joint-consensus configuration survives a restart (rebuilt from the log)", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.addMember(4, null);
  c.get(1).rn.proposeConfChange({ changes: [add(4)], context: ctx });
  c.stabilize();
  c.tick(3);
  const m = c.restart(2);
  // The restarted node re-applies from its snapshot (index 0): conf comes back via entries.
  c.stabilize();
  assert.deepEqual(m.rn.status().conf.voters, [1, 2, 3, 4]);
});

Deno.test("learners receive the log but neither vote nor count for commitment", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.addMember(4, null);
  c.get(1).rn.proposeConfChange({ changes: [learner(4)], context: ctx });
  c.stabilize();
  c.tick(3);
  assert.deepEqual(c.get(1).rn.status().conf.learners, [4]);
  assert.equal(c.get(4).rn.status().role, "learner");
  c.propose(1, "a");
  c.tick(2);
  assert.deepEqual(c.appliedData(4), ["a"]);
  // With two voters gone, the learner's acknowledgement does not make a majority.
  c.isolate(2);
  c.isolate(3);
  const idx = c.propose(1, "b");
  c.tick(3);
  assert.ok(c.get(1).rn.raft.log.committed < idx);
  assert.ok(c.get(4).rn.raft.log.lastIndex() >= idx);
  // A learner never campaigns.
  c.heal();
  c.isolate(1);
  c.tick(60);
  assert.equal(c.get(4).rn.raft.role, "follower");
});

Deno.test("learners are promoted to voters with AddNode", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.addMember(4, null);
  c.get(1).rn.proposeConfChange({ changes: [learner(4)], context: ctx });
  c.stabilize();
  c.tick(3);
  c.get(1).rn.proposeConfChange({ changes: [add(4)], context: ctx });
  c.stabilize();
  c.tick(3);
  const st = c.get(1).rn.status();
  assert.deepEqual(st.conf.voters, [1, 2, 3, 4]);
  assert.deepEqual(st.conf.learners, []);
  assert.equal(c.get(4).rn.status().role, "follower");
});

Deno.test("demoting a voter to learner passes through learnersNext", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.filter = (m) => !(m.to === 1 && m.from === 3); // keep the joint phase observable
  c.get(1).rn.proposeConfChange({ changes: [learner(3)], context: ctx });
  c.stabilize();
  const joint = c.get(2).confChanges.find((x) => x.conf.votersOutgoing.length > 0)!.conf;
  assert.deepEqual(joint.voters, [1, 2]);
  assert.deepEqual(joint.learnersNext, [3]);
  c.filter = null;
  c.tick(3);
  const st = c.get(1).rn.status();
  assert.deepEqual(st.conf.voters, [1, 2]);
  assert.deepEqual(st.conf.learners, [3]);
});

/** Removes leader 1 of {1, 2, 3, 4}; node 2 (the tie-break favourite) dies on the hand-off. */
function removeLeaderWhileTargetDies(dropAllTimeoutNow: boolean) {
  const c = new TestCluster([1, 2, 3, 4], { checkQuorum: true, preVote: true });
  c.elect(1);
  c.propose(1, "x");
  c.tick(2);
  let dead = false;
  let timeoutNow: NodeId[] = [];
  c.filter = (m) => {
    if (m.type === MessageType.TimeoutNow) {
      timeoutNow.push(m.to);
      if (m.to === 2) dead = true;
      if (dropAllTimeoutNow) return false;
    }
    return !(dead && (m.to === 2 || m.from === 2));
  };
  c.get(1).rn.proposeConfChange({ changes: [remove(1)], context: ctx });
  c.stabilize();
  assert.equal(c.get(1).rn.status().conf.voters.includes(1), false, "C(new) applied on 1");
  assert.equal(timeoutNow[0], 2, "first hand-off to the most up-to-date voter (lowest id)");
  timeoutNow = [];
  return { c, timeoutNow: () => timeoutNow };
}

Deno.test("§6 a removed leader whose hand-off target died tries the next active voter", () => {
  const { c, timeoutNow } = removeLeaderWhileTargetDies(false);
  c.tick(60);
  assert.notEqual(c.get(1).rn.raft.role, "leader", "the removed leader kept leading");
  const l = c.leader([3, 4]);
  assert.ok(l === 3 || l === 4, `a live voter leads (got ${l}, hand-offs to ${timeoutNow()})`);
  assert.ok(!timeoutNow().includes(2), "the dead target is not retried");
  c.propose(l, "after");
  c.tick(2);
  assert.deepEqual(c.appliedData(l === 3 ? 4 : 3).slice(-1), ["after"]);
});

Deno.test("§6 a removed leader never retries a hand-off target that failed, even one heard from in the window", () => {
  // Node 2 lags while leader 1 removes itself, so the hand-off goes to 3 (the most up to date),
  // which dies. Then 2 catches up: the voters re-sorted (2 and 3 tie, 2 first) put the dead 3 in
  // the second place that a rotation by attempt number would take (sim seed 31,
  // --heal handoff-to-dead). The next attempt must go to a voter not tried yet.
  const c = new TestCluster([1, 2, 3, 4], { checkQuorum: true, preVote: true });
  c.elect(1);
  c.propose(1, "x");
  c.tick(2);
  let lagging = true;
  let dead = false;
  const timeoutNow: NodeId[] = [];
  c.filter = (m) => {
    if (m.type === MessageType.TimeoutNow) {
      timeoutNow.push(m.to);
      if (m.to === 3) dead = true;
    }
    if (lagging && m.to === 2 && m.type === MessageType.App) return false;
    return !(dead && (m.to === 3 || m.from === 3));
  };
  c.get(1).rn.proposeConfChange({ changes: [remove(1)], context: ctx });
  c.stabilize();
  assert.deepEqual(timeoutNow, [3], "first hand-off to the most up-to-date voter");
  lagging = false;
  c.tick(60);
  assert.deepEqual(timeoutNow.filter((id) => id === 3), [3], `dead target retried: ${timeoutNow}`);
  assert.notEqual(c.get(1).rn.raft.role, "leader", "the removed leader kept leading");
  const l = c.leader([2, 4]);
  assert.ok(l === 2 || l === 4, `a live voter leads (got ${l}, hand-offs to ${timeoutNow})`);
});

Deno.test("§6 a removed leader steps down after its hand-off attempts fail", () => {
  // No target ever campaigns (every TimeoutNow is lost): the removed leader must not hold the
  // remaining voters back with its heartbeats forever.
  const { c, timeoutNow } = removeLeaderWhileTargetDies(true);
  c.tick(100);
  assert.notEqual(c.get(1).rn.raft.role, "leader", "the removed leader kept leading");
  assert.ok(timeoutNow().length <= 1, `hand-off retries bounded (${timeoutNow()})`);
  const l = c.leader([3, 4]);
  assert.ok(l === 3 || l === 4, `the live voters elected a leader (got ${l})`);
});
