// Tests following the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
// Consensus Algorithm (Extended Version)"), section by section.
import assert from "node:assert/strict";
import { MemoryLogStore } from "./memory_log_store.ts";
import { RawNode } from "./raw_node.ts";
import { seededRandom, TestCluster } from "./test_cluster.ts";
import {
  emptyConfState,
  type Entry,
  EntryType,
  type Message,
  message,
  MessageType,
  type NodeId,
} from "./types.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** A store holding a log with the given terms (index 1..n) and a configuration. */
function storeWithLog(voters: NodeId[], terms: number[], term = 0, commit = 0): MemoryLogStore {
  const s = new MemoryLogStore();
  s.applySnapshot({
    meta: { index: 0, term: 0, conf: { ...emptyConfState(), voters } },
    data: new Uint8Array(0),
  });
  const ents: Entry[] = terms.map((t, i) => ({
    term: t,
    index: i + 1,
    type: EntryType.Normal,
    data: enc(`e${i + 1}`),
  }));
  s.append(ents);
  s.setHardState({ term: Math.max(term, terms.at(-1) ?? 0), vote: 0, commit });
  s.syncNow();
  return s;
}

function node(
  id: NodeId,
  store: MemoryLogStore,
  opts: { preVote?: boolean; checkQuorum?: boolean; seed?: number } = {},
): RawNode {
  return new RawNode({
    id,
    electionTick: 10,
    heartbeatTick: 1,
    preVote: opts.preVote ?? false,
    checkQuorum: opts.checkQuorum ?? false,
    maxSizePerMsg: 1 << 20,
    maxInflightMsgs: 256,
    maxInflightBytes: 0,
    random: seededRandom(opts.seed ?? id),
  }, store);
}

/** Drains a node's Readys (persisting into its store); returns all messages. */
function drain(rn: RawNode, store: MemoryLogStore): Message[] {
  const out: Message[] = [];
  while (rn.hasReady()) {
    const rd = rn.ready();
    out.push(...rd.messages);
    if (rd.snapshot) store.applySnapshot(rd.snapshot);
    store.append(rd.entries);
    if (rd.hardState) store.setHardState(rd.hardState);
    store.syncNow();
    out.push(...rd.persistedMessages);
    rn.advance(rd);
  }
  return out;
}

function logTerms(rn: RawNode): number[] {
  const l = rn.raft.log;
  const out: number[] = [];
  for (let i = 1; i <= l.lastIndex(); i++) out.push(l.term(i));
  return out;
}

// ---------------------------------------------------------------- §5.1

Deno.test("§5.1 servers start as followers", () => {
  const c = new TestCluster([1, 2, 3]);
  for (const m of c.members.values()) assert.equal(m.rn.status().role, "follower");
});

Deno.test("§5.1 a server that sees a higher term adopts it and reverts to follower", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  const r = c.get(1).rn;
  const term = r.raft.term;
  r.step(message({ type: MessageType.Heartbeat, from: 2, to: 1, term: term + 5 }));
  assert.equal(r.raft.role, "follower");
  assert.equal(r.raft.term, term + 5);
  assert.equal(r.raft.lead, 2);
});

Deno.test("§5.1 a request with a stale term is rejected and the sender told the newer term", () => {
  const s = storeWithLog([1, 2, 3], [1, 1], 5, 0);
  const rn = node(1, s, { preVote: true });
  rn.step(message({
    type: MessageType.App,
    from: 2,
    to: 1,
    term: 3,
    index: 2,
    logTerm: 1,
    entries: [{ term: 3, index: 3, type: EntryType.Normal, data: enc("x") }],
  }));
  const msgs = drain(rn, s);
  assert.equal(rn.raft.log.lastIndex(), 2, "stale entries must not be appended");
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0].type, MessageType.AppResp);
  assert.equal(msgs[0].term, 5);
});

// ---------------------------------------------------------------- §5.2

Deno.test("§5.2 a follower that hears nothing becomes a candidate and requests votes", () => {
  const s = storeWithLog([1, 2, 3], []);
  const rn = node(1, s);
  for (let i = 0; i < 20; i++) rn.tick();
  assert.equal(rn.raft.role, "candidate");
  assert.equal(rn.raft.term, 1);
  assert.equal(rn.raft.vote, 1);
  const rd = rn.ready();
  assert.deepEqual(rd.hardState, { term: 1, vote: 1, commit: 0 });
  assert.equal(rd.messages.length, 0, "vote requests wait until the vote is durable");
  const votes = rd.persistedMessages.filter((m) => m.type === MessageType.Vote);
  assert.deepEqual(votes.map((m) => m.to).sort(), [2, 3]);
  for (const v of votes) assert.equal(v.term, 1);
});

Deno.test("§5.2 election timeouts are randomized in [T, 2T)", () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 60; seed++) {
    const rn = node(1, storeWithLog([1, 2, 3], []), { seed });
    let ticks = 0;
    while (rn.raft.role === "follower") {
      rn.tick();
      ticks++;
      assert.ok(ticks < 100);
    }
    assert.ok(ticks >= 10 && ticks < 20, `timeout ${ticks} outside [10, 20)`);
    seen.add(ticks);
  }
  assert.ok(seen.size >= 5, "timeouts should vary");
});

Deno.test("§5.2 a candidate with votes from a majority becomes leader and asserts authority", () => {
  const c = new TestCluster([1, 2, 3]);
  const l = c.waitLeader();
  const term = c.get(l).rn.raft.term;
  for (const m of c.members.values()) {
    assert.equal(m.rn.raft.term, term);
    assert.equal(m.rn.raft.lead, l);
  }
});

Deno.test("§5.2 a server votes for at most one candidate per term, first come first served", () => {
  const s = storeWithLog([1, 2, 3], []);
  const rn = node(1, s);
  rn.step(message({ type: MessageType.Vote, from: 2, to: 1, term: 1 }));
  rn.step(message({ type: MessageType.Vote, from: 3, to: 1, term: 1 }));
  const resps = drain(rn, s).filter((m) => m.type === MessageType.VoteResp);
  assert.deepEqual(resps.map((m) => [m.to, m.reject]), [[2, false], [3, true]]);
  assert.equal(rn.raft.vote, 2);
  // The vote survives a restart.
  const rn2 = node(1, s.crash());
  rn2.step(message({ type: MessageType.Vote, from: 3, to: 1, term: 1 }));
  const r2 = drain(rn2, s).filter((m) => m.type === MessageType.VoteResp);
  assert.equal(r2[0].reject, true);
});

Deno.test("§5.2 a candidate that hears from a leader of its term becomes follower", () => {
  const s = storeWithLog([1, 2, 3], []);
  const rn = node(1, s);
  rn.campaign();
  assert.equal(rn.raft.role, "candidate");
  rn.step(message({ type: MessageType.App, from: 2, to: 1, term: rn.raft.term, index: 0 }));
  assert.equal(rn.raft.role, "follower");
  assert.equal(rn.raft.lead, 2);
});

Deno.test("§5.2 a split vote ends with a new election at a higher term", () => {
  const c = new TestCluster([1, 2, 3], { seed: 7 });
  c.isolate(3);
  c.get(1).rn.campaign();
  c.get(2).rn.campaign();
  c.stabilize();
  assert.equal(c.leader(), 0, "each candidate only has its own vote");
  c.heal();
  const l = c.waitLeader();
  assert.ok(c.get(l).rn.raft.term >= 2);
});

Deno.test("§5.2 a candidate rejected by a majority returns to follower", () => {
  const s = storeWithLog([1, 2, 3], []);
  const rn = node(1, s);
  rn.campaign();
  const t = rn.raft.term;
  rn.step(message({ type: MessageType.VoteResp, from: 2, to: 1, term: t, reject: true }));
  assert.equal(rn.raft.role, "candidate");
  rn.step(message({ type: MessageType.VoteResp, from: 3, to: 1, term: t, reject: true }));
  assert.equal(rn.raft.role, "follower");
});

// ---------------------------------------------------------------- §5.3

Deno.test("§5.3 the leader replicates entries and commits them once a majority stores them", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(3);
  const idx = c.propose(1, "x");
  c.tick(2);
  assert.ok(c.get(1).rn.raft.log.committed >= idx);
  assert.deepEqual(c.appliedData(1), ["x"]);
  assert.deepEqual(c.appliedData(2), ["x"]);
  assert.deepEqual(c.appliedData(3), []);
  c.heal();
  c.tick(3);
  assert.deepEqual(c.appliedData(3), ["x"]);
});

Deno.test("§5.3 an entry is not committed without a majority", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(1);
  const idx = c.propose(1, "x");
  c.tick(3);
  assert.ok(c.get(1).rn.raft.log.committed < idx);
  assert.deepEqual(c.appliedData(1), []);
});

Deno.test("§5.3 every server applies the same commands in the same order", () => {
  const c = new TestCluster([1, 2, 3, 4, 5]);
  const l = c.waitLeader();
  for (let i = 0; i < 50; i++) c.get(l).rn.propose(enc(`c${i}`));
  c.stabilize();
  c.tick(2);
  const want = Array.from({ length: 50 }, (_, i) => `c${i}`);
  for (const id of c.members.keys()) assert.deepEqual(c.appliedData(id), want);
});

Deno.test("§5.3 a follower rejects AppendEntries whose previous entry does not match", () => {
  const s = storeWithLog([1, 2, 3], [1, 1, 2, 2, 2], 3, 2);
  const rn = node(1, s);
  rn.step(message({
    type: MessageType.App,
    from: 2,
    to: 1,
    term: 4,
    index: 5,
    logTerm: 3,
    entries: [{ term: 4, index: 6, type: EntryType.Normal, data: enc("y") }],
  }));
  const [resp] = drain(rn, s).filter((m) => m.type === MessageType.AppResp);
  assert.equal(resp.reject, true);
  assert.equal(resp.index, 5);
  // Conflict hint: the last index whose term is <= 3 (index 5, term 2).
  assert.equal(resp.rejectHint, 5);
  assert.equal(resp.logTerm, 2);
  assert.equal(rn.raft.log.lastIndex(), 5);
});

Deno.test("§5.3 a follower truncates its log only from the first real conflict", () => {
  const s = storeWithLog([1, 2, 3], [1, 1, 2, 2], 2, 1);
  const rn = node(1, s);
  // Re-delivery of entries it already has must not truncate entry 4.
  rn.step(message({
    type: MessageType.App,
    from: 2,
    to: 1,
    term: 2,
    index: 1,
    logTerm: 1,
    entries: [{ term: 1, index: 2, type: EntryType.Normal, data: enc("e2") }],
  }));
  drain(rn, s);
  assert.deepEqual(logTerms(rn), [1, 1, 2, 2]);
  // A conflicting entry at 3 replaces 3 and 4.
  rn.step(message({
    type: MessageType.App,
    from: 3,
    to: 1,
    term: 3,
    index: 2,
    logTerm: 1,
    entries: [{ term: 3, index: 3, type: EntryType.Normal, data: enc("n3") }],
  }));
  drain(rn, s);
  assert.deepEqual(logTerms(rn), [1, 1, 3]);
  assert.equal(s.lastIndex(), 3);
});

Deno.test("§5.3 the leader brings every Figure 7 follower log into agreement with its own", () => {
  const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followers: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  for (const [name, flog] of Object.entries(followers)) {
    const c = new TestCluster([]);
    const ls = storeWithLog([1, 2, 3], leaderLog, 7, 0);
    const fs = storeWithLog([1, 2, 3], flog, Math.max(...flog), 0);
    c.addMember(1, null, ls);
    c.addMember(2, null, fs);
    const l = c.get(1).rn;
    l.campaign();
    c.processReadies();
    // Node 3 (absent) grants its vote so that node 1 wins even against a longer log.
    l.step(message({ type: MessageType.VoteResp, from: 3, to: 1, term: l.raft.term }));
    assert.equal(l.raft.role, "leader", name);
    c.stabilize();
    c.tick(3);
    assert.deepEqual(logTerms(c.get(2).rn), logTerms(l), `follower (${name})`);
    assert.deepEqual(logTerms(l), [...leaderLog, 8]);
  }
});

// ---------------------------------------------------------------- §5.4

Deno.test("§5.4.1 a voter denies its vote to a candidate whose log is less up-to-date", () => {
  const cases: [number, number, boolean][] = [
    // [candidate last index, candidate last term, granted]
    [2, 2, false], // lower last term
    [3, 2, false], // lower last term, longer log
    [2, 3, false], // same term, shorter log
    [3, 3, true], // identical
    [4, 3, true], // same term, longer
    [1, 4, true], // higher last term
  ];
  for (const [idx, lt, granted] of cases) {
    const s = storeWithLog([1, 2, 3], [1, 2, 3], 3, 0);
    const rn = node(1, s);
    rn.step(message({ type: MessageType.Vote, from: 2, to: 1, term: 4, index: idx, logTerm: lt }));
    const [resp] = drain(rn, s).filter((m) => m.type === MessageType.VoteResp);
    assert.equal(!resp.reject, granted, `candidate (${idx}, ${lt})`);
  }
});

Deno.test("§5.4.2 a leader never commits an entry of a previous term by counting replicas", () => {
  // Figure 8: entry 2 of term 2 is on a majority but must not be committed by the term-3 leader
  // until an entry of term 3 is.
  const c = new TestCluster([]);
  c.addMember(1, null, storeWithLog([1, 2, 3], [1, 2], 2, 1));
  c.addMember(2, null, storeWithLog([1, 2, 3], [1, 2], 2, 1));
  c.addMember(3, null, storeWithLog([1, 2, 3], [1], 2, 1));
  c.filter = (m) => m.type !== MessageType.App; // the no-op does not get out
  const l = c.get(1).rn;
  l.campaign();
  c.stabilize();
  assert.equal(l.raft.role, "leader");
  // Node 2 reports that it matches up to index 2.
  l.step(message({ type: MessageType.AppResp, from: 2, to: 1, term: l.raft.term, index: 2 }));
  c.processReadies();
  assert.equal(l.raft.log.committed, 1, "term-2 entry must not be committed by counting");
  c.filter = null;
  c.tick(2);
  assert.equal(l.raft.log.committed, 3, "committing the no-op commits entry 2 too");
  assert.equal(c.get(3).rn.raft.log.committed, 3);
});

// ---------------------------------------------------------------- §5.5 / §5.6

Deno.test("§5.5 lost AppendEntries are retried until the follower has the entries", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  let dropped = 0;
  c.filter = (m) => {
    if (m.type === MessageType.App && m.to === 3 && m.entries.length && dropped < 3) {
      dropped++;
      return false;
    }
    return true;
  };
  c.propose(1, "a");
  c.propose(1, "b");
  c.tick(5);
  assert.ok(dropped > 0);
  assert.deepEqual(c.appliedData(3), ["a", "b"]);
});

Deno.test("§5.5 a crashed follower restarts from its durable state and catches up", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.propose(1, "a");
  c.tick(2);
  const before = c.get(3).rn.raft.log.lastIndex();
  c.restart(3);
  assert.equal(c.get(3).rn.raft.log.lastIndex(), before);
  c.propose(1, "b");
  c.tick(3);
  assert.deepEqual(c.appliedData(3), ["a", "b"]);
});

Deno.test("§5.6 heartbeats keep followers from starting elections", () => {
  const c = new TestCluster([1, 2, 3]);
  const l = c.waitLeader();
  const term = c.get(l).rn.raft.term;
  c.tick(200);
  assert.equal(c.leader(), l);
  assert.equal(c.get(l).rn.raft.term, term);
});

// ---------------------------------------------------------------- §8

Deno.test("§8 a new leader commits a no-op entry of its term at the start of its term", () => {
  const c = new TestCluster([1, 2, 3]);
  const l = c.waitLeader();
  const r = c.get(l).rn.raft;
  const last = r.log.lastIndex();
  const [e] = r.log.slice(last, last + 1);
  assert.equal(e.term, r.term);
  assert.equal(e.data.length, 0);
  assert.equal(r.log.committed, last);
});

Deno.test("§8 proposals to a follower fail with NotLeaderError naming the leader", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(2);
  assert.throws(() => c.get(1).rn.propose(enc("x")), (e: Error & { leaderId?: number }) => {
    return e.name === "NotLeaderError" && e.leaderId === 2;
  });
});
