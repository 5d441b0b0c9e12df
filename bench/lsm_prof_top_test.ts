/** bench/lsm_prof_top.ts: window totals of main-thread and worker profiles. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type CpuProfile, mainProfileOf, profileTop } from "./lsm_prof_top.ts";

/** A profile starting at `startTime` (µs): `f` for 2 ms, then `g` for 1 ms, one sample per ms. */
function profile(startTime: number): CpuProfile {
  const frame = (functionName: string) => ({ functionName, url: "file:///x.ts", lineNumber: 0 });
  return {
    startTime,
    nodes: [
      { id: 1, callFrame: frame("(root)"), children: [2, 3] },
      { id: 2, callFrame: frame("f") },
      { id: 3, callFrame: frame("g") },
    ],
    samples: [2, 2, 3, 3],
    timeDeltas: [0, 1000, 1000, 1000],
  };
}

Deno.test("a window counts the part of each sample's interval inside it", () => {
  const p = profile(5_000_000);
  const all = profileTop(p);
  assert.equal(all.window, 3000);
  assert.equal(all.self.get("f x.ts:1"), 2000);
  assert.equal(all.total.get("(root) x.ts:1"), 3000);
  // [1.5 ms, 2.5 ms]: half of f's second sample and half of g's first.
  const w = profileTop(p, 1500, 2500);
  assert.equal(w.window, 1000);
  assert.equal(w.self.get("f x.ts:1"), 500);
  assert.equal(w.self.get("g x.ts:1"), 500);
});

Deno.test("a worker's profile is read on the main thread's timeline (found by pid in its directory)", () => {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-prof-top-" });
  try {
    Deno.writeTextFileSync(join(dir, "CPU.100.42.cpuprofile"), "{}");
    Deno.writeTextFileSync(join(dir, "CPU.100.43.cpuprofile"), "{}");
    const worker = join(dir, "CPU.600.42.worker-1.cpuprofile");
    assert.equal(mainProfileOf(worker), join(dir, "CPU.100.42.cpuprofile"));
    assert.equal(mainProfileOf(join(dir, "CPU.100.42.cpuprofile")), undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  // The worker started 500 ms after the main thread: its f runs at 500-502 ms of the process.
  const main = profile(5_000_000);
  const worker = profile(5_500_000);
  const w = profileTop(worker, 500_000, 502_000, main.startTime);
  assert.equal(w.window, 2000);
  assert.equal(w.self.get("f x.ts:1"), 2000);
  assert.equal(w.end, 503_000);
  assert.equal(profileTop(worker, 0, 3000, main.startTime).window, 0);
});
