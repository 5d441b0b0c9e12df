// Log compaction and InstallSnapshot in chunks (paper §7).
import assert from "node:assert/strict";
import { TestCluster, type TestCluster as TC } from "./test_cluster.ts";
import { message, MessageType } from "./types.ts";

/** Compacts the leader's log at its applied index with `size` bytes of snapshot data. */
function compact(c: TC, id: number, size: number): number {
  const m = c.get(id);
  const st = m.rn.status();
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7) & 255;
  const term = m.rn.raft.log.term(st.applied);
  m.store.createSnapshot({ meta: { index: st.applied, term, conf: st.conf }, data });
  return st.applied;
}

Deno.test("§7 a follower behind the leader's first index receives a chunked snapshot", () => {
  const c = new TestCluster([1, 2, 3], { snapshotChunkBytes: 1000 });
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 20; i++) c.propose(1, `v${i}`);
  c.tick(2);
  const si = compact(c, 1, 10_500);
  let chunks = 0;
  c.filter = (m) => {
    if (m.type === MessageType.Snap) chunks++;
    return true;
  };
  c.heal();
  c.tick(5);
  assert.equal(chunks, 11);
  const f = c.get(3);
  assert.deepEqual(f.restoredSnapshots, [si]);
  assert.equal(f.store.snapshotMeta().index, si);
  assert.equal(f.store.snapshot().data.length, 10_500);
  assert.equal(f.store.snapshot().data[9999], (9999 * 7) & 255);
  assert.deepEqual(f.store.snapshotMeta().conf.voters, [1, 2, 3]);
  // Replication continues with entries after the snapshot.
  c.propose(1, "after");
  c.tick(2);
  assert.deepEqual(c.appliedData(3), ["after"]);
  assert.equal(c.get(1).rn.status().progress!.get(3)!.state, "replicate");
});

Deno.test("§7 a lost snapshot chunk is re-sent from the acknowledged offset", () => {
  const c = new TestCluster([1, 2, 3], { snapshotChunkBytes: 100 });
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 5; i++) c.propose(1, `v${i}`);
  c.tick(2);
  compact(c, 1, 1000);
  const offsets: number[] = [];
  let dropped = false;
  c.filter = (m) => {
    if (m.type !== MessageType.Snap) return true;
    offsets.push(m.snapshot!.offset);
    if (m.snapshot!.offset === 300 && !dropped) {
      dropped = true;
      return false;
    }
    return true;
  };
  c.heal();
  c.tick(10);
  assert.ok(dropped);
  assert.ok(offsets.filter((o) => o === 300).length >= 2, "offset 300 re-sent");
  assert.equal(c.get(3).store.snapshot().data.length, 1000);
  assert.equal(c.get(3).rn.raft.log.committed, c.get(1).rn.raft.log.committed);
});

Deno.test("§7 a restarted receiver makes the leader restart the transfer from offset 0", () => {
  const c = new TestCluster([1, 2, 3], { snapshotChunkBytes: 100 });
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 5; i++) c.propose(1, `v${i}`);
  c.tick(2);
  compact(c, 1, 1000);
  let n = 0;
  let restarted = false;
  c.filter = (m) => {
    if (m.type === MessageType.Snap && m.to === 3) n++;
    return !(m.type === MessageType.Snap && n > 2 && !restarted);
  };
  c.heal();
  c.tick(1);
  restarted = true;
  c.restart(3);
  c.tick(10);
  assert.equal(c.get(3).store.snapshot().data.length, 1000);
  assert.equal(c.get(3).rn.raft.log.committed, c.get(1).rn.raft.log.committed);
});

Deno.test("§7 an empty snapshot is still delivered", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  c.isolate(2);
  c.propose(1, "a");
  c.tick(2);
  compact(c, 1, 0);
  c.heal();
  c.tick(5);
  assert.equal(c.get(2).rn.raft.log.committed, c.get(1).rn.raft.log.committed);
});

Deno.test("§7 snapshot chunks of another leader never continue a partial transfer", () => {
  const c = new TestCluster([1, 2, 3]);
  c.elect(1);
  const f = c.get(2);
  const term = f.rn.raft.term;
  const meta = { index: 50, term, conf: f.rn.status().conf };
  const chunk = (from: number, t: number, offset: number, fill: number, done: boolean) =>
    message({
      type: MessageType.Snap,
      from,
      to: 2,
      term: t,
      snapshot: { meta, offset, total: 8, data: new Uint8Array(4).fill(fill), done },
    });
  // The first half from leader 1, then (1 is gone) leader 3 of the next term sends a chunk at
  // the same offset of a snapshot with the same index, term and size: different bytes.
  f.rn.step(chunk(1, term, 0, 0xaa, false));
  c.processReadies();
  f.rn.step(chunk(3, term + 1, 4, 0xbb, true));
  c.processReadies();
  assert.deepEqual(f.restoredSnapshots, [], "a snapshot spliced from two senders was installed");
  const resps = c.queue.filter((m) => m.type === MessageType.SnapResp && m.to === 3);
  assert.equal(resps.length, 1);
  assert.equal(resps[0].reject, true, "the new sender is asked to start from offset 0");
  assert.equal(resps[0].index, 0);
  // The new sender's own transfer from offset 0 completes.
  f.rn.step(chunk(3, term + 1, 0, 0xbb, false));
  f.rn.step(chunk(3, term + 1, 4, 0xbb, true));
  c.processReadies();
  assert.deepEqual(f.restoredSnapshots, [50]);
  assert.deepEqual([...f.store.snapshot().data], new Array(8).fill(0xbb));
});
