// ReadIndex (thesis §6.4) and lease reads.
import assert from "node:assert/strict";
import { TestCluster } from "./test_cluster.ts";
import { type Message, MessageType } from "./types.ts";

const ctx = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("read index: the leader answers after one heartbeat round with its commit index", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.propose(1, "a");
  const commit = c.get(1).rn.raft.log.committed;
  c.get(1).rn.readIndex(ctx("r1"));
  c.stabilize();
  const rs = c.get(1).readStates;
  assert.equal(rs.length, 1);
  assert.equal(rs[0].index, commit);
  assert.equal(dec(rs[0].context), "r1");
});

Deno.test("read index: reads waiting at the same moment share one heartbeat round", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  let heartbeats = 0;
  c.filter = (m) => {
    if (m.type === MessageType.Heartbeat && m.from === 1) heartbeats++;
    return true;
  };
  for (let i = 0; i < 100; i++) c.get(1).rn.readIndex(ctx(`r${i}`));
  c.stabilize();
  assert.equal(c.get(1).readStates.length, 100);
  assert.equal(heartbeats, 2, "one round: one heartbeat per follower");
});

Deno.test("read index: no answer without a quorum of acknowledgements", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(1);
  c.get(1).rn.readIndex(ctx("r"));
  c.tick(3);
  assert.equal(c.get(1).readStates.length, 0);
  c.heal();
  c.tick(2);
  assert.equal(c.get(1).readStates.length, 1);
});

Deno.test("read index: a follower forwards the request to the leader", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.propose(1, "a");
  c.get(2).rn.readIndex(ctx("f"));
  c.stabilize();
  const rs = c.get(2).readStates;
  assert.equal(rs.length, 1);
  assert.equal(dec(rs[0].context), "f");
  assert.equal(rs[0].index, c.get(1).rn.raft.log.committed);
});

Deno.test("read index: a new leader defers reads until it commits an entry of its term", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.stabilize();
  // Node 2 becomes leader but its no-op cannot be replicated yet.
  c.filter = (m) => !(m.type === MessageType.App && m.from === 2);
  c.get(1).rn.transferLeader(2);
  c.stabilize();
  assert.equal(c.get(2).rn.raft.role, "leader");
  c.get(2).rn.readIndex(ctx("x"));
  c.stabilize();
  assert.equal(c.get(2).readStates.length, 0);
  c.filter = null;
  c.tick(2);
  const rs = c.get(2).readStates;
  assert.equal(rs.length, 1);
  assert.ok(rs[0].index >= c.get(2).rn.raft.log.lastIndex() - 0);
});

Deno.test("read index: lease reads answer at once when enabled with check quorum", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true, leaseRead: true });
  // With lease reads, freshly started nodes refuse votes for an election timeout, so let the
  // cluster elect on its own. The lease starts with a heartbeat round a quorum acknowledged.
  const l = c.waitLeader();
  c.tick(1);
  c.stabilize();
  let heartbeats = 0;
  c.filter = (m) => {
    if (m.type === MessageType.Heartbeat) heartbeats++;
    return true;
  };
  c.get(l).rn.readIndex(ctx("l"));
  c.processReadies();
  assert.equal(c.get(l).readStates.length, 1);
  c.deliver();
  assert.equal(heartbeats, 0);
});

Deno.test("read index: a single-voter leader answers at once", () => {
  const c = new TestCluster([1]);
  c.elect(1);
  c.get(1).rn.readIndex(ctx("s"));
  c.stabilize();
  assert.equal(c.get(1).readStates.length, 1);
});

Deno.test("read index: no lease reads while a leadership transfer may be under way", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true, leaseRead: true });
  const l = c.waitLeader();
  c.tick(2);
  const target = l === 3 ? 2 : 3;
  c.isolate(target);
  c.get(l).rn.transferLeader(target);
  c.stabilize();
  c.get(l).rn.readIndex(ctx("t"));
  c.processReadies();
  assert.equal(c.get(l).readStates.length, 0, "not served from the lease");
  c.stabilize();
  assert.equal(c.get(l).readStates.length, 1, "served after a heartbeat round");
});

Deno.test("read index: a single-voter leader waits for an entry of its own term to commit", () => {
  // A restarted single node whose durable commit index lags (commit-only hard state changes are
  // not synced at once) must not answer below what it acknowledged before the restart.
  const c = new TestCluster([1]);
  c.elect(1);
  c.propose(1, "a");
  const before = c.get(1).rn.raft.log.committed;
  const m = c.restart(1);
  c.stabilize(); // apply the committed log (a node does not campaign before that)
  assert.equal(m.rn.raft.role, "follower");
  m.rn.campaign();
  assert.equal(m.rn.raft.role, "leader");
  assert.ok(!m.rn.raft.committedEntryInCurrentTerm());
  m.rn.readIndex(ctx("s"));
  c.stabilize();
  assert.equal(m.readStates.length, 1);
  assert.ok(
    m.readStates[0].index > before,
    `read index ${m.readStates[0].index} must cover the new term's no-op (> ${before})`,
  );
  assert.equal(m.rn.raft.log.term(m.readStates[0].index), m.rn.raft.term);
});

Deno.test("lease reads: a leader whose loop stalled (dropped ticks) holds no lease after the stall", () => {
  // tickMs 10, electionTick 10: the lease lasts 100 × (1 − 0.05) − 10 = 85 ms after a send.
  const c = new TestCluster([1, 2, 3], { checkQuorum: true, leaseRead: true, tickMs: 10 });
  const l = c.waitLeader();
  c.tick(2);
  c.propose(l, "v1");
  const stale = c.get(l).rn.raft.log.committed;
  // The old leader's event loop stalls for 500 ms (a long fsync): it gets no ticks and sends
  // nothing. The others elect a new leader and commit a write meanwhile.
  c.isolate(l);
  const others = [1, 2, 3].filter((id) => id !== l);
  for (let i = 0; i < 50; i++) {
    c.now += 10;
    for (const id of others) c.get(id).rn.tick(c.now);
    c.stabilize();
  }
  const nl = c.leader(others);
  assert.ok(nl !== 0 && c.get(nl).rn.raft.term > c.get(l).rn.raft.term, "a new leader");
  c.propose(nl, "v2");
  assert.ok(c.get(nl).rn.raft.log.committed > stale);
  // The loop resumes: a read arrives before any tick. Its lease is long over in real time.
  c.get(l).rn.readIndex(ctx("stalled"), c.now);
  c.processReadies();
  assert.deepEqual(c.get(l).readStates, [], "served a stale read from an expired lease");
});

Deno.test("lease reads: the lease is dated at heartbeat send time and ends a tick early", () => {
  const c = new TestCluster([1, 2, 3], { checkQuorum: true, leaseRead: true, tickMs: 10 });
  const l = c.waitLeader();
  c.tick(2);
  // From now on acknowledgements do not reach the leader, except the one for the heartbeats
  // sent at time s, which is delayed by 60 ms (delayed messages).
  const held: Message[] = [];
  c.filter = (m) => {
    if (m.type !== MessageType.HeartbeatResp || m.to !== l) return true;
    if (held.length === 0) held.push(m);
    return false;
  };
  const s = c.now + 10;
  c.tick(1); // heartbeats sent at s; followers reset their election timers now
  assert.equal(c.now, s);
  assert.equal(held.length, 1, "one acknowledgement (a quorum with the leader) held back");
  const read = (name: string) => {
    const before = c.get(l).readStates.length;
    c.get(l).rn.readIndex(ctx(name), c.now);
    c.processReadies();
    return c.get(l).readStates.length > before;
  };
  c.tick(6); // s + 60: the delayed acknowledgement arrives
  c.filter = null;
  for (const m of held) c.get(l).rn.step(m, c.now);
  c.filter = (m) => !(m.type === MessageType.HeartbeatResp && m.to === l);
  c.tick(1); // s + 70
  assert.equal(read("in lease"), true, "within the lease: served at once");
  c.tick(2); // s + 90: a follower whose first tick came right after s may vote from s + 90
  assert.equal(read("after lease"), false, "lease must end at s + 85 ms, not s + 100");
});
