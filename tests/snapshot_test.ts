/**
 * Backup and restore end to end with real node processes: `gokv snapshot save` under write
 * load, `gokv snapshot restore` into a fresh 3-node cluster, every write acknowledged before the
 * save began found there with the versionstamp it was acknowledged with (or a later write's).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { gokv, httpPut, httpPutVersionstamp, TestCluster, waitFor } from "./harness.ts";

/** A key's value and versionstamp (20 hex digits: they compare as strings). */
interface Versioned {
  value: string;
  versionstamp: string;
}

/** Every key/value under `prefix` on node `addr`, following the scan pages. */
async function scanAll(
  addr: string,
  prefix: string,
  consistency = "linearizable",
): Promise<Map<string, Versioned>> {
  const out = new Map<string, Versioned>();
  let cursor = "";
  do {
    const res = await fetch(
      `http://${addr}/v1/kv?prefix=${encodeURIComponent(prefix)}&consistency=${consistency}` +
        (cursor ? `&cursor=${cursor}` : ""),
      { signal: AbortSignal.timeout(10_000) },
    );
    assert.equal(res.status, 200);
    const body = await res.json() as { kvs: (Versioned & { key: string })[]; next?: string };
    for (const kv of body.kvs) out.set(kv.key, { value: kv.value, versionstamp: kv.versionstamp });
    cursor = body.next ?? "";
  } while (cursor);
  return out;
}

Deno.test({
  name:
    "snapshot save under write load restores a fresh 3-node cluster with every acked key and its versionstamp",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const a = await TestCluster.create();
    let b: TestCluster | undefined;
    const keep = await Deno.makeTempDir({ prefix: "gokv-backup-" });
    const file = join(keep, "backup.db");
    try {
      a.startAll();
      const leaderA = await a.waitLeader();
      // Keys written once before the load and never again: each must come back with exactly the
      // versionstamp its write was acknowledged with.
      const fixed = new Map<string, Versioned>();
      for (let i = 0; i < 50; i++) {
        const value = `once ${i}`;
        const vs = await httpPutVersionstamp(a.nodes.get(leaderA)!.http, `fixed/${i}`, value);
        assert.ok(vs, `fixed/${i} not acknowledged`);
        fixed.set(`fixed/${i}`, { value, versionstamp: vs });
      }
      // Writers on every node (followers forward), overwriting a key space so values change.
      const acked = new Map<string, Versioned>();
      let running = true;
      let seq = 0;
      let acks = 0;
      const writers = [1, 2, 3, 1, 2, 3].map(async (id) => {
        while (running) {
          const i = seq++;
          const key = `k${i % 4000}`;
          const value = `v${i}`;
          const vs = await httpPutVersionstamp(a.nodes.get(id)!.http, key, value);
          if (vs) {
            acks++;
            // Only the latest acknowledged write of a key is expected: the one with the highest
            // versionstamp (writes to one key from different writers may be acknowledged out of
            // order).
            const prev = acked.get(key);
            if (!prev || prev.versionstamp < vs) acked.set(key, { value, versionstamp: vs });
          }
        }
      });
      await waitFor(() => acked.size >= 1500, 60_000, "1500 acknowledged writes");
      // Every write acknowledged before the save began, with its value and versionstamp then.
      const before = new Map([...fixed, ...acked]);
      const newestBefore = [...before.values()].reduce(
        (m, v) => v.versionstamp > m ? v.versionstamp : m,
        "",
      );
      const acksBefore = acks;
      const save = await a.cli(["snapshot", "save", file]);
      const acksDuring = acks - acksBefore;
      assert.equal(save.code, 0, save.stderr + save.stdout);
      assert.match(save.stdout, /Snapshot saved at .*backup\.db \(index \d+, term \d+, \d+ keys/);
      running = false;
      await Promise.all(writers);
      assert.ok(acksDuring > 0, "writes were acknowledged while saving");

      // The same through the client endpoints (the nodes' HTTP addresses are asked of them).
      const file2 = join(keep, "backup2.db");
      const save2 = await gokv(["snapshot", "save", file2, "--endpoints", a.endpoints()]);
      assert.equal(save2.code, 0, save2.stderr + save2.stdout);
      const st2 = await gokv(["snapshot", "status", file2, "-w", "json"]);
      assert.equal(st2.code, 0, st2.stderr);

      const st = await gokv(["snapshot", "status", file, "-w", "json"]);
      assert.equal(st.code, 0, st.stderr);
      const meta = JSON.parse(st.stdout);
      assert.ok(meta.index > 0 && meta.term > 0, st.stdout);
      // The versionstamp the backup was taken at: at or after every write acknowledged before.
      assert.match(meta.versionstamp, /^[0-9a-f]{20}$/, st.stdout);
      assert.ok(meta.versionstamp >= newestBefore, `${meta.versionstamp} < ${newestBefore}`);
      const table = await gokv(["snapshot", "status", file]);
      assert.match(table.stdout, new RegExp(`VERSIONSTAMP.*${meta.versionstamp}`, "s"));
      assert.ok(meta.keys >= before.size, `${meta.keys} keys < ${before.size} acked`);
      assert.ok(JSON.parse(st2.stdout).index >= meta.index, st2.stdout);
      // The serving node's metrics count the backup, its route, and the Raft traffic.
      const metrics = await (await fetch(`http://${a.nodes.get(meta.nodeId)!.http}/metrics`))
        .text();
      assert.match(metrics, /^gokv_snapshot_saves_total [1-9]/m);
      assert.match(metrics, /^gokv_snapshot_save_seconds_count [1-9]/m);
      assert.match(
        metrics,
        /^gokv_http_requests_total\{method="GET",route="\/v1\/snapshot",status="200"\} [1-9]/m,
      );
      assert.match(metrics, /^gokv_raft_messages_sent_total\{type="App"\} [1-9]/m);
      assert.match(metrics, /^gokv_raft_messages_received_total\{type="AppResp"\} [1-9]/m);
      assert.match(metrics, /^gokv_fsync_seconds_count [1-9]/m);
      assert.doesNotMatch(metrics, /gokv_storage_stat/);
      await a.stop();

      // A new cluster (new ports, new data directory) seeded from the file.
      b = await TestCluster.create();
      for (const id of b.nodes.keys()) {
        const r = await b.cli(["snapshot", "restore", file, "--id", String(id)]);
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.match(r.stdout, new RegExp(`Restored node ${id} into .*node-${id}`));
      }
      b.startAll();
      const leader = await b.waitLeader(30_000);
      const got = await scanAll(b.nodes.get(leader)!.http, "");
      let same = 0;
      for (const [k, v] of before) {
        const now = got.get(k);
        assert.ok(now !== undefined, `acknowledged key ${k} missing after restore`);
        if (now.value === v.value) {
          // The same write (every value is written once): the same versionstamp.
          assert.equal(now.versionstamp, v.versionstamp, `${k}: versionstamp changed`);
          same++;
        } else {
          // A later write (during the save) overwrote it: never an older one.
          assert.ok(
            now.versionstamp > v.versionstamp,
            `${k}: ${now.versionstamp} older than ${v.versionstamp}`,
          );
        }
      }
      for (const [k, v] of fixed) assert.deepEqual(got.get(k), v, k);
      assert.ok(same >= fixed.size, `${same} keys kept their write`);
      // Nothing in the restored cluster is newer than the backup.
      for (const [k, v] of got) {
        assert.ok(
          v.versionstamp <= meta.versionstamp,
          `${k}: ${v.versionstamp} > ${meta.versionstamp}`,
        );
      }
      // The restored cluster starts at the snapshot's index and accepts writes.
      const s = await b.status(leader);
      assert.ok((s.commitIndex as number) >= meta.index, JSON.stringify(s));
      assert.ok(await httpPut(b.nodes.get(leader)!.http, "after-restore", "ok"));
      // Every member holds the same restored data.
      for (const id of b.nodes.keys()) {
        await waitFor(
          async () => {
            const m = await scanAll(b!.nodes.get(id)!.http, "", "serializable");
            return m.get("after-restore")?.value === "ok" && m.size === got.size + 1;
          },
          20_000,
          `node ${id} caught up`,
        );
      }
    } finally {
      await a.stop();
      await b?.stop();
      await Deno.remove(keep, { recursive: true });
    }
  },
});
