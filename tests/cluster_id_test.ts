/**
 * The cluster id with real node processes: set at bootstrap by the first leader (no KV Connect
 * traffic needed), the same on every node, outside the user keys, kept across a full restart,
 * by a node that catches up by snapshot, and by a backup restored into a new cluster; it is the
 * KV Connect database id.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { httpPut, TestCluster, waitFor } from "./harness.ts";

const TOKEN = "cluster-id-test-token-0123";
const RAFT =
  "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n  snapshot_threshold: 50\n";
const YAML = RAFT + `kv_connect:\n  access_token: ${TOKEN}\n`;

/** The cluster id node `id` reports in /v1/status (null: none yet). */
async function statusId(c: TestCluster, id: number): Promise<string | null> {
  return (await c.status(id)).clusterId as string | null;
}

/** Waits until every node of `ids` reports one and the same cluster id; returns it. */
async function commonId(c: TestCluster, ids: number[]): Promise<string> {
  return await waitFor(
    async () => {
      const got = new Set<string | null>();
      for (const id of ids) got.add(await statusId(c, id).catch(() => null));
      const [only] = got;
      return got.size === 1 && typeof only === "string" ? only : undefined;
    },
    20_000,
    `one cluster id on nodes ${ids}`,
  );
}

/** Every key of a full HTTP scan of node `id` (all pages, no prefix). */
async function allKeys(c: TestCluster, id: number): Promise<string[]> {
  const out: string[] = [];
  let cursor = "";
  do {
    const res = await fetch(
      `http://${c.nodes.get(id)!.http}/v1/kv?prefix=${cursor ? `&cursor=${cursor}` : ""}`,
      { signal: AbortSignal.timeout(10_000) },
    );
    assert.equal(res.status, 200);
    const body = await res.json() as { kvs: { key?: string; keyBase64?: string }[]; next?: string };
    out.push(...body.kvs.map((kv) => kv.key ?? `base64:${kv.keyBase64}`));
    cursor = body.next ?? "";
  } while (cursor);
  return out;
}

async function databaseId(c: TestCluster, id: number): Promise<string> {
  const res = await fetch(`http://${c.nodes.get(id)!.http}/kv`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [3] }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text).databaseId;
}

Deno.test({
  name:
    "the cluster id is set at bootstrap, the same everywhere, not a user key, and kept by restarts, snapshots and backups",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const a = await TestCluster.create({ extraYaml: YAML });
    let b: TestCluster | undefined;
    const keep = await Deno.makeTempDir({ prefix: "gokv-cluster-id-" });
    try {
      a.startAll();
      let leader = await a.waitLeader();
      // No KV Connect request has been made: the first leader set it.
      const id = await commonId(a, [1, 2, 3]);
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      // Enough writes for snapshots (threshold 50) that compact the log past the id's entry.
      for (let i = 0; i < 200; i++) {
        assert.ok(await httpPut(a.nodes.get(leader)!.http, `k${i}`, `v${i}`), `write ${i}`);
      }
      // It is the KV Connect database id, and no scan of the user keys shows it.
      for (const n of [1, 2, 3]) assert.equal(await databaseId(a, n), id);
      const keys = await allKeys(a, leader);
      assert.equal(keys.length, 200, `only the 200 written keys: ${keys.slice(200)}`);
      // A 4th node that joins catches up by snapshot and has the id.
      const n4 = a.addNodeAddrs(4);
      await a.writeConfig();
      const add = await fetch(`http://${a.nodes.get(leader)!.http}/v1/members`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-gokv-client": "test" },
        body: JSON.stringify({ id: 4, peer: n4.peer, client: n4.client, http: n4.http }),
      });
      assert.ok(add.ok, await add.text());
      a.start(4, ["--join"]);
      await waitFor(
        async () => ((await a.status(4)).snapshotIndex as number) > 0,
        30_000,
        "node 4 to install a snapshot",
      );
      assert.equal(await commonId(a, [1, 2, 3, 4]), id);
      // A full restart keeps it.
      for (const n of [...a.procs.keys()]) await a.kill(n);
      a.startAll();
      leader = await a.waitLeader();
      assert.equal(await commonId(a, [1, 2, 3, 4]), id);
      assert.equal(await databaseId(a, leader), id);
      // A backup restored into a new cluster keeps it.
      const file = join(keep, "backup.db");
      const save = await a.cli(["snapshot", "save", file]);
      assert.equal(save.code, 0, save.stderr + save.stdout);
      await a.stop();
      b = await TestCluster.create({ extraYaml: YAML });
      for (const n of b.nodes.keys()) {
        const r = await b.cli(["snapshot", "restore", file, "--id", String(n)]);
        assert.equal(r.code, 0, r.stderr + r.stdout);
      }
      b.startAll();
      const leaderB = await b.waitLeader(30_000);
      assert.equal(await commonId(b, [1, 2, 3]), id);
      assert.equal(await databaseId(b, leaderB), id);
      assert.equal((await allKeys(b, leaderB)).length, 200);
    } finally {
      await a.stop();
      await b?.stop();
      await Deno.remove(keep, { recursive: true });
    }
  },
});
