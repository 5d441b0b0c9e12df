/**
 * Raft core benchmark: an in-process 3-node cluster of RawNodes over in-memory storage and an
 * in-memory message queue, driven directly in a loop (no timers, no I/O). Measures committed
 * small entries per second with batching, and ReadIndex reads per second (many reads share one
 * heartbeat round). Run with `deno task bench:raft`.
 *
 * @module
 */
import { TestCluster } from "../raft/test_cluster.ts";

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function benchWrites(entries: number, batch: number, size: number): number {
  const c = new TestCluster([1, 2, 3], {
    crashable: false,
    recordApplied: false,
    maxInflightMsgs: 256,
    maxSizePerMsg: 1 << 20,
  });
  const l = c.waitLeader();
  const leader = c.get(l).rn;
  const payload = new Uint8Array(size).fill(7);
  const start0 = leader.raft.log.committed;
  const t0 = performance.now();
  let proposed = 0;
  while (leader.raft.log.committed - start0 < entries) {
    if (proposed < entries) {
      for (let i = 0; i < batch; i++) leader.propose(payload);
      proposed += batch;
    }
    c.processReadies();
    c.deliver();
  }
  const dt = (performance.now() - t0) / 1000;
  // Every node applied everything.
  c.stabilize();
  for (const m of c.members.values()) {
    if (m.appliedIndex < leader.raft.log.committed) throw new Error("follower behind");
  }
  return (leader.raft.log.committed - start0) / dt;
}

function benchReads(reads: number, batch: number, onFollower: boolean): number {
  const c = new TestCluster([1, 2, 3], { crashable: false, recordApplied: false });
  const l = c.waitLeader();
  const id = onFollower ? (l === 1 ? 2 : 1) : l;
  const m = c.get(id);
  const ctx = new Uint8Array(8);
  let answered = 0;
  const t0 = performance.now();
  let asked = 0;
  while (answered < reads) {
    if (asked < reads) {
      for (let i = 0; i < batch; i++) m.rn.readIndex(ctx);
      asked += batch;
    }
    c.processReadies();
    c.deliver();
    answered += m.readStates.length;
    m.readStates.length = 0;
  }
  const dt = (performance.now() - t0) / 1000;
  return answered / dt;
}

if (import.meta.main) {
  // Warm up the JIT.
  benchWrites(50_000, 1000, 32);
  benchReads(50_000, 1000, false);

  const rows: [string, number, string][] = [];
  const w1 = benchWrites(1_000_000, 1000, 32);
  rows.push(["committed entries/s (32 B, 1000 per batch)", w1, ">= 200,000"]);
  const w2 = benchWrites(1_000_000, 10_000, 32);
  rows.push(["committed entries/s (32 B, 10000 per batch)", w2, ">= 200,000"]);
  const w3 = benchWrites(200_000, 1000, 1024);
  rows.push(["committed entries/s (1 KiB, 1000 per batch)", w3, "-"]);
  const r1 = benchReads(2_000_000, 10_000, false);
  rows.push(["ReadIndex reads/s on the leader (10000 per round)", r1, ">= 500,000"]);
  const r2 = benchReads(2_000_000, 10_000, true);
  rows.push(["ReadIndex reads/s via a follower (10000 per round)", r2, "-"]);

  console.log("Raft core benchmark: 3 RawNodes in one process, in-memory storage and network\n");
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [name, v, target] of rows) {
    console.log(`${name.padEnd(w)}  ${fmt(v).padStart(12)}   target ${target}`);
  }
}
