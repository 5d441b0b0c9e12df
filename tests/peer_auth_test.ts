/**
 * The reproduced attack of issue 13: a process that can reach a peer port but holds no cluster
 * secret sends a forged AppendEntries claiming to be the leader at term T+1. With a cluster secret
 * configured it changes nothing and is counted in /metrics.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { TestCluster, waitFor } from "./harness.ts";
import { forge } from "./forge.ts";

async function get(http: string, key: string): Promise<string | undefined> {
  const res = await fetch(`http://${http}/v1/kv/${key}`, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) {
    await res.body?.cancel();
    return undefined;
  }
  return await res.text(); // values are served raw
}

Deno.test("forged AppendEntries from a process without the cluster secret changes nothing and is counted", async () => {
  const probe = await Deno.makeTempDir();
  const secretFile = join(probe, "secret");
  await Deno.writeTextFile(secretFile, crypto.randomUUID() + crypto.randomUUID());
  const c = await TestCluster.create({
    storage: "memory",
    extraYaml: "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n" +
      `security:\n  peer_secret_file: ${JSON.stringify(secretFile)}\n`,
  });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const lead = c.nodes.get(leader)!;
    const res = await fetch(`http://${lead.http}/v1/kv/k`, { method: "PUT", body: "orig" });
    assert.equal(res.status, 200, await res.text());
    const follower = [...c.nodes.keys()].find((id) => id !== leader)!;
    const f = c.nodes.get(follower)!;
    await waitFor(async () => (await get(f.http, "k")) === "orig", 10_000, "replicated");
    await forge(f.peer, leader, follower, await c.status(follower));
    // Counted on the follower's /metrics ...
    await waitFor(
      async () => {
        const text = await (await fetch(`http://${f.http}/metrics`)).text();
        return /gokv_peer_unauthenticated_connections_total\{reason="unauthenticated"\} [1-9]/.test(
          text,
        );
      },
      10_000,
      "refused connection counted",
    );
    // ... and nothing changed anywhere: a write after the attack commits, every node agrees.
    const res2 = await fetch(`http://${lead.http}/v1/kv/after`, { method: "PUT", body: "1" });
    assert.equal(res2.status, 200, await res2.text());
    for (const n of c.nodes.values()) {
      await waitFor(async () => (await get(n.http, "after")) === "1", 10_000, "after");
      assert.equal(await get(n.http, "k"), "orig", `node ${n.id} still reads orig`);
    }
  } finally {
    await c.stop();
    await Deno.remove(probe, { recursive: true });
  }
});
