// Replication details: flow control, fast backtracking, durability ordering of messages,
// liveness after a partition, and the log/inflight building blocks.
import assert from "node:assert/strict";
import { RaftLog } from "./log.ts";
import { MemoryLogStore } from "./memory_log_store.ts";
import { TestCluster } from "./test_cluster.ts";
import { Inflights } from "./tracker.ts";
import { type Entry, EntryType, MessageType } from "./types.ts";

const ent = (index: number, term: number): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new Uint8Array(4),
});

Deno.test("flow control: at most maxInflightMsgs appends are in flight per follower", () => {
  const c = new TestCluster([1, 2, 3], { maxInflightMsgs: 3, maxSizePerMsg: 1 });
  c.elect(1);
  c.stabilize();
  let inFlight = 0;
  let max = 0;
  c.filter = (m) => {
    if (m.type === MessageType.App && m.to === 2 && m.entries.length) inFlight++;
    if (m.type === MessageType.AppResp && m.from === 2) inFlight = 0;
    max = Math.max(max, inFlight);
    return true;
  };
  // Hold node 2's responses back so the window fills.
  c.cutLink(1, 2);
  for (let i = 0; i < 20; i++) c.get(1).rn.propose(new Uint8Array([i]));
  const sent = c.get(1).rn.ready().messages.filter((m) => m.to === 2 && m.type === MessageType.App);
  assert.equal(sent.length, 3, "window of 3 messages of one entry each");
  c.heal();
});

Deno.test("flow control: the in-flight byte budget limits appends", () => {
  const c = new TestCluster([1, 2], { maxInflightBytes: 200, maxSizePerMsg: 100 });
  c.elect(1);
  c.stabilize();
  c.cutLink(1, 2);
  for (let i = 0; i < 20; i++) c.get(1).rn.propose(new Uint8Array(50));
  const rd = c.get(1).rn.ready();
  const apps = rd.messages.filter((m) => m.type === MessageType.App);
  const bytes = apps.reduce((n, m) => n + m.entries.reduce((k, e) => k + e.data.length, 0), 0);
  assert.ok(bytes <= 300, `sent ${bytes} bytes`);
  assert.ok(bytes < 20 * 50);
});

Deno.test("§5.3 fast backtracking repairs a long divergent suffix in few round trips", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  // Node 1 leads alone for a while: 200 entries that never commit.
  c.isolate(1);
  for (let i = 0; i < 200; i++) c.get(1).rn.propose(new Uint8Array([1]));
  c.stabilize();
  c.heal();
  // Nodes 2 and 3 elect node 2 and write 50 entries; node 1 must drop its 200 entries.
  c.isolate(1);
  c.tick(40);
  const l = c.leader([2, 3]);
  assert.ok(l === 2 || l === 3);
  for (let i = 0; i < 50; i++) c.get(l).rn.propose(new Uint8Array([2]));
  c.stabilize();
  let rejects = 0;
  c.filter = (m) => {
    if (m.type === MessageType.AppResp && m.reject && m.from === 1) rejects++;
    return true;
  };
  c.heal();
  c.tick(5);
  assert.ok(rejects <= 3, `${rejects} rejections`);
  assert.equal(c.get(1).rn.raft.log.lastIndex(), c.get(l).rn.raft.log.lastIndex());
  assert.equal(c.get(1).rn.raft.log.committed, c.get(l).rn.raft.log.committed);
});

Deno.test("durability: acknowledgements wait for persistence, leader appends do not", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.stabilize();
  c.get(1).rn.propose(new Uint8Array([1]));
  const rd = c.get(1).rn.ready();
  assert.ok(rd.messages.some((m) => m.type === MessageType.App), "leader sends in parallel");
  assert.equal(rd.entries.length, 1);
  // Leader's own entry is not counted before advance (persistence).
  assert.equal(c.get(1).rn.status().progress!.get(1)!.match, rd.entries[0].index - 1);
  c.handleReady(c.get(1), rd);
  assert.equal(c.get(1).rn.status().progress!.get(1)!.match, rd.entries[0].index);
  c.deliver();
  const frd = c.get(2).rn.ready();
  assert.equal(frd.messages.filter((m) => m.type === MessageType.AppResp).length, 0);
  assert.equal(frd.persistedMessages.filter((m) => m.type === MessageType.AppResp).length, 1);
});

Deno.test("durability: a granted vote leaves only after the vote is persisted", () => {
  // Sent before its sync, a vote is forgotten by a crash of the voter, which may then vote for
  // another candidate of the same term: two leaders of one term (issue 11 item 17, row c).
  const c = new TestCluster([1, 2, 3]);
  c.stabilize();
  c.get(1).rn.campaign();
  const crd = c.get(1).rn.ready();
  c.handleReady(c.get(1), crd);
  c.deliver();
  const vrd = c.get(2).rn.ready();
  assert.equal(vrd.hardState?.vote, 1, "the vote is in this Ready's hard state");
  assert.equal(vrd.messages.filter((m) => m.type === MessageType.VoteResp).length, 0);
  const votes = vrd.persistedMessages.filter((m) => m.type === MessageType.VoteResp);
  assert.deepEqual(votes.map((m) => [m.to, m.reject]), [[1, false]]);
});

Deno.test("liveness: a node with a higher term rejoins even without pre-vote and check quorum", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  c.tick(100); // node 3 campaigns repeatedly and its term climbs
  assert.ok(c.get(3).rn.raft.term > c.get(1).rn.raft.term);
  c.heal();
  c.tick(100);
  const l = c.leader();
  assert.ok(l > 0);
  for (const id of [1, 2, 3]) assert.equal(c.get(id).rn.raft.lead, l);
  c.propose(l, "after");
  c.tick(2);
  assert.deepEqual(c.appliedData(3), ["after"]);
});

Deno.test("log: findConflictByTerm gives the last index with a term not above the hint", () => {
  const s = new MemoryLogStore();
  s.append([ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 2), ent(5, 4)]);
  const log = new RaftLog(s);
  assert.equal(log.findConflictByTerm(5, 3), 4);
  assert.equal(log.findConflictByTerm(5, 1), 2);
  assert.equal(log.findConflictByTerm(5, 0), 0);
  assert.equal(log.findConflictByTerm(3, 9), 3);
});

Deno.test("log: unstable entries shadow storage and become stable only with a matching term", () => {
  const s = new MemoryLogStore();
  s.append([ent(1, 1), ent(2, 1)]);
  const log = new RaftLog(s);
  log.append([ent(3, 2), ent(4, 2)]);
  assert.equal(log.lastIndex(), 4);
  assert.equal(log.persistedLastIndex(), 2);
  log.append([ent(4, 3)]); // conflict replaces 4
  log.stableTo(4, 2); // stale: term 2 at 4 no longer exists
  assert.equal(log.persistedLastIndex(), 2);
  s.append([ent(3, 2), ent(4, 3)]); // the driver persists, then advances
  log.stableTo(4, 3);
  assert.equal(log.persistedLastIndex(), 4);
  assert.deepEqual(log.slice(1, 5).map((e) => e.term), [1, 1, 2, 3]);
});

Deno.test("inflights: freeing by index releases counts and bytes", () => {
  const f = new Inflights(3, 0);
  f.add(5, 10);
  f.add(7, 10);
  f.add(9, 10);
  assert.equal(f.full(), true);
  f.freeLE(7);
  assert.equal(f.count, 1);
  assert.equal(f.bytes, 10);
  assert.equal(f.full(), false);
  const b = new Inflights(100, 25);
  b.add(1, 20);
  assert.equal(b.full(), false);
  b.add(2, 20);
  assert.equal(b.full(), true);
});
