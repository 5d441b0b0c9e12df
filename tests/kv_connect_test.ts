/**
 * KV Connect against a real 3-node cluster (real node processes, tests/harness.ts): the Deno
 * runtime's own client (`Deno.openKv(url)` in child `deno run --unstable-kv` processes with
 * `DENO_KV_ACCESS_TOKEN`) and gokv's `openKv`, the README's example, and increments through a
 * leader kill.
 */
import assert from "node:assert/strict";
import { TestCluster, waitFor } from "./harness.ts";
import { runInDeno, runKvWorkload, runWorkloadInDeno, verifyValues } from "./kv_workload.ts";
import { KvU64, openKv } from "../client/kv.ts";

const TOKEN = "kv-connect-test-token-0123";
const YAML = "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n" +
  `kv_connect:\n  access_token: ${TOKEN}\n`;
/** How long an expired key may stay readable: the leader sweeps every 250 ms; a key is hidden
 * once the state machine's clock passes its time. */
const EXPIRY_BOUND_MS = 3_000;

const kvUrl = (c: TestCluster, id: number) => `http://${c.nodes.get(id)!.http}/kv`;

async function databaseIdOf(c: TestCluster, id: number): Promise<string> {
  const res = await fetch(kvUrl(c, id), {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text).databaseId;
}

Deno.test("Deno's own client and gokv's openKv run the workload on a 3-node cluster and read each other's data", async () => {
  const c = await TestCluster.create({ extraYaml: YAML });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const follower = [...c.nodes.keys()].find((id) => id !== leader)!;
    // One database id on every node: the cluster's.
    const id = await waitFor(async () => await databaseIdOf(c, leader), 10_000, "database id");
    for (const n of c.nodes.keys()) assert.equal(await databaseIdOf(c, n), id);
    // Deno's client through a follower (the strong endpoint reaches the leader from any node).
    const stamps = await runWorkloadInDeno(kvUrl(c, follower), TOKEN, "deno", EXPIRY_BOUND_MS);
    assert.ok(stamps.length > 30);
    const kv = await openKv(kvUrl(c, leader), { token: TOKEN });
    try {
      const mine = await runKvWorkload(kv, { run: "gokv", KvU64, expiryBoundMs: EXPIRY_BOUND_MS });
      assert.ok(mine[0] > stamps[stamps.length - 1], "versionstamps keep increasing");
      await verifyValues(kv, "deno");
    } finally {
      kv.close();
    }
    await runInDeno(kvUrl(c, follower), TOKEN, `await wl.verifyValues(kv, "gokv");`);
  } finally {
    await c.stop();
  }
});
