/**
 * Replays simulator seeds: `deno run -A raft/sim/replay.ts --seed N [--trace] [--steps S]`, or
 * `--from A --count C` to sweep a range of seeds and list the failing ones. `--driver` runs the
 * real driver (raft/sim/driver_simulation.ts; `--steps` is then its chaos ticks, `--heal MODE`
 * forces a heal mode: all, leave-one-down, handoff-to-dead) instead of the RawNode simulation.
 * `--cas-share F` and `--multi-share F` fix the workload's shares of compare-and-sets and atomic
 * multi-key operations (as the CAS-heavy sweep of raft/sim_test.ts does: 0.5 and 0.3).
 *
 * @module
 */
import { type HealMode, runDriverSimulation } from "./driver_simulation.ts";
import { runSimulation, type SimulationResult } from "./simulation.ts";

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  if (i >= 0) return Deno.args[i + 1];
  const eq = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

if (import.meta.main) {
  const steps = arg("steps") ? Number(arg("steps")) : undefined;
  const trace = Deno.args.includes("--trace");
  const driver = Deno.args.includes("--driver");
  const run = (s: number, t = false): Promise<SimulationResult> =>
    driver
      ? runDriverSimulation(s, { ticks: steps, trace: t, heal: arg("heal") as HealMode })
      : Promise.resolve(runSimulation(s, {
        steps,
        trace: t,
        casShare: arg("cas-share") ? Number(arg("cas-share")) : undefined,
        multiShare: arg("multi-share") ? Number(arg("multi-share")) : undefined,
      }));
  const seed = arg("seed");
  if (seed !== undefined) {
    const result = await run(Number(seed), trace);
    console.log(JSON.stringify(result.summary));
    if (!result.ok) {
      console.log(`seed ${seed} FAILED: ${result.error}`);
      Deno.exit(1);
    }
    console.log(`seed ${seed} ok`);
  } else {
    const from = Number(arg("from") ?? 1);
    const count = Number(arg("count") ?? 100);
    const failed: number[] = [];
    const t0 = performance.now();
    for (let s = from; s < from + count; s++) {
      const result = await run(s);
      if (!result.ok) {
        failed.push(s);
        console.log(`seed ${s} FAILED: ${result.error?.split("\n")[0]}`);
      }
    }
    const ms = performance.now() - t0;
    console.log(`${count} runs in ${(ms / 1000).toFixed(1)} s, ${failed.length} failed`);
    if (failed.length > 0) Deno.exit(1);
  }
}
