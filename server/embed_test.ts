import assert from "node:assert/strict";
import { nullLogger } from "../raft/logger.ts";
import { type NodeHandle, startNode } from "./embed.ts";
// Never the same port twice (the OS may offer a just-closed port again: a config with one
// address for two ports was refused, once, under load).
import { freePort } from "../tests/harness.ts";

async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test({
  name: "three embedded nodes in one process elect a leader, replicate, and close without leaks",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    const nodes = [1, 2, 3].map((id) => ({
      id,
      peer: `127.0.0.1:${freePort()}`,
      client: `127.0.0.1:${freePort()}`,
      http: `127.0.0.1:${freePort()}`,
    }));
    // Its own data directory: a memory node refuses to start where one ran before, so a shared
    // `data/` made the test fail on its second run in the same checkout.
    const dataDir = await Deno.makeTempDir();
    const config = {
      storage: "memory",
      data_dir: dataDir,
      nodes,
      raft: { tick_ms: 10, heartbeat_ms: 30, election_ms: 200 },
    };
    const handles: NodeHandle[] = [];
    try {
      for (const { id } of nodes) {
        handles.push(await startNode({ config, id, logger: nullLogger }));
      }
      await waitFor(
        () => handles.some((h) => h.status().role === "leader"),
        10_000,
        "a leader",
      );
      const kv = await handles[2].client();
      await kv.put("embedded", "yes");
      assert.equal(await kv.getString("embedded"), "yes");
      // Every node applies the write.
      const applied = (h: NodeHandle) => h.status().appliedIndex as number;
      const leader = handles.find((h) => h.status().role === "leader")!;
      await waitFor(
        () => handles.every((h) => applied(h) >= applied(leader)),
        10_000,
        "all nodes to apply",
      );
      assert.equal(await kv.getString("embedded", { consistency: "serializable" }), "yes");
    } finally {
      for (const h of handles) await h.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
