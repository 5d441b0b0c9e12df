// Randomized runs of a small cluster with message loss, partitions and crashes, checking
// Election Safety, Log Matching (committed prefixes) and State Machine Safety (§5.4.3).
import assert from "node:assert/strict";
import { seededRandom, TestCluster } from "./test_cluster.ts";
import type { Message } from "./types.ts";

function run(seed: number): void {
  const rnd = seededRandom(seed * 7919);
  const c = new TestCluster([1, 2, 3], {
    seed,
    preVote: seed % 2 === 0,
    checkQuorum: seed % 3 !== 0,
    maxInflightMsgs: 4,
  });
  const leaders = new Map<number, number>(); // term -> leader
  let dropRate = 0.1;
  c.filter = (_m: Message) => rnd() >= dropRate;
  let n = 0;
  for (let step = 0; step < 300; step++) {
    const r = rnd();
    if (r < 0.03) {
      c.heal();
      c.isolate(1 + Math.floor(rnd() * 3));
    } else if (r < 0.08) c.heal();
    else if (r < 0.1) c.restart(1 + Math.floor(rnd() * 3));
    else if (r < 0.12) dropRate = rnd() * 0.3;
    for (const m of c.members.values()) {
      if (m.rn.raft.role === "leader" && rnd() < 0.5) {
        try {
          m.rn.propose(new TextEncoder().encode(`v${n++}`));
        } catch { /* transfer or removal */ }
      }
    }
    c.tick();
    for (const m of c.members.values()) {
      const r = m.rn.raft;
      if (r.role !== "leader") continue;
      const prev = leaders.get(r.term);
      assert.ok(
        prev === undefined || prev === m.id,
        `two leaders in term ${r.term} (seed ${seed})`,
      );
      leaders.set(r.term, m.id);
    }
  }
  c.heal();
  c.filter = null;
  c.tick(60);
  // Every node applied a prefix of the same sequence, and the healed cluster converged.
  const seqs = [...c.members.keys()].map((id) => c.appliedData(id));
  const longest = seqs.reduce((a, b) => (a.length >= b.length ? a : b));
  for (const s of seqs) {
    assert.deepEqual(s, longest.slice(0, s.length), `divergent state machines (seed ${seed})`);
  }
  const commits = [...c.members.values()].map((m) => m.rn.raft.log.committed);
  assert.ok(commits.every((x) => x === commits[0]), `not converged (seed ${seed}): ${commits}`);
}

Deno.test("random faults: 150 seeded runs keep election safety and state machine safety", () => {
  for (let seed = 1; seed <= 150; seed++) run(seed);
});
