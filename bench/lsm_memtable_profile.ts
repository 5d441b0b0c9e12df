/** Ad-hoc memtable micro-benchmark (not CI): deno run bench/lsm_memtable_profile.ts [n] */
import { Memtable } from "../lsm/memtable.ts";
const N = Number(Deno.args[0] ?? 70000);
const keys: Uint8Array[] = [];
const te = new TextEncoder();
for (let i = 0; i < N; i++) {
  keys.push(te.encode(String(Math.floor(Math.random() * 1e9)).padStart(16, "0")));
}
const v = new Uint8Array(100);
for (let r = 0; r < 3; r++) {
  const m = new Memtable();
  let t = performance.now();
  for (let i = 0; i < N; i++) m.add(i + 1, 1, keys[i], v);
  const ins = (performance.now() - t) * 1000 / N;
  t = performance.now();
  let f = 0;
  for (let i = 0; i < N; i++) if (m.find(keys[i], 1e15) >= 0) f++;
  console.log(
    "insert us",
    ins.toFixed(2),
    "find us",
    ((performance.now() - t) * 1000 / N).toFixed(2),
    f === N,
    "MB",
    (m.approximateBytes / 1e6).toFixed(1),
  );
}
