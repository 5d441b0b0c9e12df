import assert from "node:assert/strict";
import { LsmDb } from "./mod.ts";

Deno.test("onBackgroundWork reports each flush and compaction with its duration", async () => {
  const dir = await Deno.makeTempDir();
  const db = await LsmDb.open(dir, { memtableBytes: 64 * 1024, l0CompactionTrigger: 2 });
  const seen: Array<[string, number]> = [];
  db.onBackgroundWork = (kind, seconds) => seen.push([kind, seconds]);
  try {
    const value = new Uint8Array(512).fill(7);
    for (let round = 0; round < 4; round++) {
      const ops = [];
      for (let i = 0; i < 200; i++) {
        ops.push({ type: "put" as const, key: `k${String(i).padStart(5, "0")}`, value });
      }
      await db.write(ops);
      await db.flush();
    }
    await db.compact();
    const kinds = new Set(seen.map(([k]) => k));
    assert.ok(kinds.has("flush"), JSON.stringify(seen));
    assert.ok(kinds.has("compaction") || kinds.has("move"), JSON.stringify(seen));
    for (const [, s] of seen) assert.ok(s >= 0 && s < 60, `a duration in seconds: ${s}`);
    const stats = db.stats();
    assert.equal(seen.filter(([k]) => k === "flush").length, stats.flushes);
    assert.equal(seen.filter(([k]) => k !== "flush").length, stats.compactions);
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
