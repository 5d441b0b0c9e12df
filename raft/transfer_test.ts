// Leadership transfer (thesis §3.10).
import assert from "node:assert/strict";
import { ProposalDroppedError } from "./errors.ts";
import { TestCluster } from "./test_cluster.ts";
import { MessageType } from "./types.ts";

Deno.test("transfer: an up-to-date follower takes over at once", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true, preVote: true });
  c.elect(1);
  c.propose(1, "a");
  c.get(1).rn.transferLeader(3);
  c.stabilize();
  assert.equal(c.leader(), 3);
  assert.equal(c.get(1).rn.raft.lead, 3);
});

Deno.test("transfer: a lagging target is caught up first, then told to campaign", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 5; i++) c.propose(1, `x${i}`);
  c.heal();
  const seen: MessageType[] = [];
  c.filter = (m) => {
    if (m.from === 1 && m.to === 3) seen.push(m.type);
    return true;
  };
  c.get(1).rn.transferLeader(3);
  c.stabilize();
  assert.equal(c.leader(), 3);
  assert.ok(seen.indexOf(MessageType.App) < seen.indexOf(MessageType.TimeoutNow));
  assert.equal(c.appliedData(3).length, 5);
});

Deno.test("transfer: proposals are dropped while a transfer is in progress", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  c.get(1).rn.transferLeader(3);
  c.stabilize();
  assert.throws(() => c.get(1).rn.propose(new Uint8Array([1])), ProposalDroppedError);
});

Deno.test("transfer: aborted after an election timeout when the target does not respond", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  c.get(1).rn.transferLeader(3);
  c.stabilize();
  assert.equal(c.get(1).rn.status().leadTransferee, 3);
  c.tick(12);
  assert.equal(c.get(1).rn.status().leadTransferee, 0);
  assert.equal(c.leader(), 1);
  c.propose(1, "ok");
});

Deno.test("transfer: a follower forwards the request to the leader", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.get(2).rn.transferLeader(2);
  c.stabilize();
  assert.equal(c.leader(), 2);
});

Deno.test("transfer: the forced campaign overrides leader stickiness", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true });
  c.elect(1);
  c.get(1).rn.transferLeader(2);
  c.stabilize();
  assert.equal(c.leader(), 2);
});
