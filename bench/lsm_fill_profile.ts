/** Ad-hoc fillrandom experiment (not CI): deno run -A bench/lsm_fill_profile.ts '<json options>' [n] */
import { LsmDb } from "../lsm/mod.ts";
const opts = JSON.parse(Deno.args[0] ?? "{}");
const N = Number(Deno.args[1] ?? 1_000_000);
const dir = await Deno.makeTempDir({ prefix: "lsm_fill_" });
try {
  const db = await LsmDb.open(dir, opts);
  const v = new Uint8Array(100).fill(7);
  const te = new TextEncoder();
  const key = (i: number) => te.encode(String(i).padStart(16, "0"));
  let stallMs = 0;
  const t = performance.now();
  for (let b = 0; b < N; b += 1000) {
    const ops = [];
    for (let i = 0; i < 1000; i++) {
      ops.push({ type: "put" as const, key: key(Math.floor(Math.random() * N)), value: v });
    }
    const s0 = performance.now();
    await db.write(ops);
    const d = performance.now() - s0;
    if (d > 1) stallMs += d;
  }
  const ms = performance.now() - t;
  const st = db.stats();
  stallMs = 0;
  console.log(
    JSON.stringify(opts),
    "fill/s",
    Math.round(N / ms * 1000),
    "stall ms",
    Math.round(stallMs),
    Math.round(st.writeStallMs),
    st.writeStalls,
    "of",
    Math.round(ms),
    "compactions",
    st.compactions,
    "MB read/written",
    Math.round(st.compactionBytesRead / 1e6),
    Math.round(st.compactionBytesWritten / 1e6),
    JSON.stringify(st.levels.map((l) => l.files)),
  );
  await db.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}
