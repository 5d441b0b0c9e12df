/** Ad-hoc probe (not CI): 64 sync writers right after a fill (compaction running) vs after it settles. */
import { LsmDb } from "../lsm/mod.ts";
const dir = await Deno.makeTempDir({ prefix: "lsm_sync_" });
try {
  const db = await LsmDb.open(dir);
  const v = new Uint8Array(100).fill(7);
  const te = new TextEncoder();
  const key = (i: number) => te.encode(String(i).padStart(16, "0"));
  const N = Number(Deno.args[0] ?? 600000);
  for (let b = 0; b < N; b += 1000) {
    const ops = [];
    for (let i = 0; i < 1000; i++) {
      ops.push({ type: "put" as const, key: key(Math.floor(Math.random() * N)), value: v });
    }
    await db.write(ops);
  }
  const run = async (label: string) => {
    const s0 = db.stats().syncs;
    const t = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next < 5000) {
        next++;
        await db.put(key(Math.floor(Math.random() * N)), v, { sync: true });
      }
    }));
    const ms = performance.now() - t;
    const syncs = db.stats().syncs - s0;
    console.log(
      label,
      "ops/s",
      Math.round(5000 / ms * 1000),
      "syncs",
      syncs,
      "ms/sync",
      (ms / syncs).toFixed(2),
      "L0",
      db.stats().levels[0].files,
    );
  };
  await run("during compaction");
  while (!db.stats().levels.every((l, i) => i === 6 || l.score < 1)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await run("after settle");
  await db.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}
