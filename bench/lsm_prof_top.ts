/**
 * Ad-hoc helper (not CI): the functions with the most self time in a V8 CPU
 * profile written by `deno run --cpu-prof`, optionally within a time window.
 *   deno run -A bench/lsm_prof_top.ts <file.cpuprofile> [top=30] [fromMs] [toMs]
 */
interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
const [file, topArg, fromArg, toArg] = Deno.args;
const prof = JSON.parse(Deno.readTextFileSync(file)) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const top = Number(topArg ?? 30);
const from = fromArg === undefined ? -Infinity : Number(fromArg) * 1000;
const to = toArg === undefined ? Infinity : Number(toArg) * 1000;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<string, number>();
const total = new Map<string, number>();
let t = 0;
let all = 0;
const label = (n: Node) =>
  `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").slice(-1)[0]}:${
    n.callFrame.lineNumber + 1
  }`;
for (let i = 0; i < prof.samples.length; i++) {
  t += prof.timeDeltas[i];
  if (t < from || t > to) continue;
  const dt = prof.timeDeltas[i + 1] ?? 0;
  all += dt;
  const n = byId.get(prof.samples[i])!;
  self.set(label(n), (self.get(label(n)) ?? 0) + dt);
  const seen = new Set<string>();
  for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
    const l = label(byId.get(id)!);
    if (seen.has(l)) continue;
    seen.add(l);
    total.set(l, (total.get(l) ?? 0) + dt);
  }
}
const pct = (x: number) => ((x * 100) / all).toFixed(1).padStart(5) + "%";
console.log(`window ${(all / 1000).toFixed(0)} ms of ${(t / 1000).toFixed(0)} ms`);
console.log("-- self");
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(pct(v), (v / 1000).toFixed(0).padStart(6), "ms ", k);
}
console.log("-- total");
for (const [k, v] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(pct(v), (v / 1000).toFixed(0).padStart(6), "ms ", k);
}
