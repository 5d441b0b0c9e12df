// A node on the memory backend that restarts refuses to start (it lost its log, term and vote);
// the documented way back (remove, delete its directory, add, start with --join) catches it up
// by snapshot (issue 11 item 8).
import assert from "node:assert/strict";
import { join } from "node:path";
import { httpGet, httpPut, TestCluster, waitFor } from "./harness.ts";

Deno.test("a memory-backend node that restarts refuses to start; removed and re-added it catches up", async () => {
  const c = await TestCluster.create({
    storage: "memory",
    extraYaml:
      "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n  snapshot_threshold: 20\n",
  });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const lhttp = c.nodes.get(leader)!.http;
    for (let i = 0; i < 40; i++) assert.ok(await httpPut(lhttp, `k${i}`, `v${i}`));
    const f = [1, 2, 3].find((id) => id !== leader)!;
    await c.kill(f);
    // Restarted, it exits at once with a clear message instead of rejoining with an empty log.
    const proc = c.start(f);
    const st = await Promise.race([
      proc.status,
      new Promise<null>((r) => setTimeout(() => r(null), 20_000)),
    ]);
    assert.ok(st, "the restarted memory node kept running (with a forgotten log, term, vote)");
    c.procs.delete(f);
    assert.equal(st.code, 1);
    await waitFor(
      async () => (await c.log(f)).includes("ran before with storage: memory"),
      10_000,
      "the refusal in the node's log",
    );
    assert.match(await c.log(f), new RegExp(`gokv member remove ${f}`));
    // The others go on.
    assert.ok(await httpPut(lhttp, "after", "1"));
    // The way back: remove it, delete its directory, add it again, start it with --join.
    const del = await fetch(`http://${lhttp}/v1/members/${f}`, { method: "DELETE" });
    assert.ok(del.ok, await del.text());
    await Deno.remove(join(c.dir, "data", `node-${f}`), { recursive: true });
    const n = c.nodes.get(f)!;
    const add = await fetch(`http://${lhttp}/v1/members`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-gokv-client": "test" },
      body: JSON.stringify({ id: f, peer: n.peer, client: n.client, http: n.http }),
    });
    assert.ok(add.ok, await add.text());
    c.start(f, ["--join"]);
    await waitFor(
      async () => {
        try {
          return (await httpGet(n.http, "after", "serializable")).value === "1";
        } catch {
          return false;
        }
      },
      30_000,
      "the re-added node to catch up",
    );
    assert.equal((await httpGet(n.http, "k0", "serializable")).value, "v0");
    const s = await c.status(f);
    assert.ok((s.snapshotIndex as number) > 0, "caught up by snapshot");
  } finally {
    await c.stop();
  }
});
