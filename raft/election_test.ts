// Pre-vote (thesis §9.6), leader stickiness (thesis §4.2.3) and CheckQuorum (thesis §6.2).
import assert from "node:assert/strict";
import { TestCluster } from "./test_cluster.ts";
import { message, MessageType } from "./types.ts";

Deno.test("pre-vote: a partitioned node does not increase its term", () => {
  const c = new TestCluster([1, 2, 3], { preVote: true });
  c.elect(1);
  const term = c.get(1).rn.raft.term;
  c.isolate(3);
  c.tick(100);
  const r3 = c.get(3).rn.raft;
  assert.equal(r3.term, term, "pre-vote rounds persist nothing");
  assert.equal(r3.role, "pre-candidate");
});

Deno.test("pre-vote: a rejoining node does not disrupt a healthy cluster", () => {
  const c = new TestCluster([1, 2, 3], { preVote: true });
  c.elect(1);
  const term = c.get(1).rn.raft.term;
  c.isolate(3);
  c.tick(100);
  c.heal();
  c.tick(30);
  assert.equal(c.leader(), 1);
  assert.equal(c.get(1).rn.raft.term, term);
  assert.equal(c.get(3).rn.raft.lead, 1);
});

Deno.test("pre-vote: a node wins a real election only after winning the pre-vote round", () => {
  const c = new TestCluster([1, 2, 3], { preVote: true });
  c.stabilize();
  const types: MessageType[] = [];
  c.filter = (m) => {
    if (m.from === 1) types.push(m.type);
    return true;
  };
  c.get(1).rn.campaign();
  c.stabilize();
  assert.equal(c.get(1).rn.raft.role, "leader");
  const firstVote = types.indexOf(MessageType.Vote);
  assert.ok(
    types.indexOf(MessageType.PreVote) >= 0 && firstVote > types.indexOf(MessageType.PreVote),
  );
  assert.equal(c.get(1).rn.raft.term, 2, "pre-vote itself does not bump the term");
});

Deno.test("leader stickiness: voters that heard from the leader recently refuse votes", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true });
  c.elect(1);
  const term = c.get(1).rn.raft.term;
  // Node 3 campaigns without pre-vote (e.g. its clock ran fast): refused, leader unaffected.
  c.get(3).rn.campaign();
  c.stabilize();
  assert.equal(c.get(1).rn.raft.role, "leader");
  assert.equal(c.get(1).rn.raft.term, term);
  assert.equal(c.get(2).rn.raft.term, term, "node 2 ignored the higher-term vote request");
  // Eventually node 3 learns the leader again.
  c.tick(40);
  assert.equal(c.leader(), 1);
  assert.equal(c.get(3).rn.raft.lead, 1);
});

Deno.test("check quorum: a leader that cannot hear from a quorum steps down", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true, preVote: true });
  c.elect(1);
  c.isolate(1);
  c.tick(25);
  assert.notEqual(c.get(1).rn.raft.role, "leader");
  const l = c.waitLeader(200, [2, 3]);
  assert.ok(l === 2 || l === 3);
  c.heal();
  c.tick(20);
  assert.equal(c.get(1).rn.raft.lead, l);
});

Deno.test("check quorum: a leader hearing from a quorum stays leader", () => {
  const c = new TestCluster([1, 2, 3, 4, 5], { checkQuorum: true });
  c.elect(1);
  c.isolate(4);
  c.isolate(5);
  c.tick(100);
  assert.equal(c.get(1).rn.raft.role, "leader");
});

Deno.test("election: stale vote responses and messages of old terms are ignored", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  const r = c.get(1).rn;
  const t = r.raft.term;
  r.step(message({ type: MessageType.VoteResp, from: 2, to: 1, term: t - 1, reject: true }));
  r.step(message({ type: MessageType.App, from: 3, to: 1, term: t - 1 }));
  assert.equal(r.raft.role, "leader");
  // Garbage from the network does not throw.
  r.step(message({ type: MessageType.App, from: 9, to: 1, term: t, index: 1e9, logTerm: 5 }));
  r.step(message({ type: MessageType.Snap, from: 2, to: 1, term: t }));
  r.step(message({ type: MessageType.Hup, from: 2, to: 1 }));
  assert.equal(r.raft.role, "leader");
});
