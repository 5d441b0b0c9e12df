/**
 * Crash-test writer: opens the database given on the command line and writes
 * forever from several concurrent writers, printing one line per acknowledged
 * write to stdout. The parent kills it with SIGKILL at a random moment.
 *
 * Lines: "ready" | "put <key> <value>" | "deleting <key>" (before) | "del <key>" |
 * "batch <id> <n> <value>"
 * (a batch puts keys `<id>/0` .. `<id>/<n-1>`, all with the same value).
 * Usage: deno run -A crash_writer.ts <dir> <cycle> <seed>
 */
import { LsmDb } from "../mod.ts";

const [dir, cycle, seedArg] = Deno.args;
let seed = Number(seedArg) >>> 0;
const rand = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const enc = new TextEncoder();
const out = (line: string) => Deno.stdout.writeSync(enc.encode(line + "\n"));

const db = await LsmDb.open(dir, {
  memtableBytes: 32 * 1024,
  targetFileBytes: 32 * 1024,
  levelBaseBytes: 128 * 1024,
  l0CompactionTrigger: 2,
  l0StopTrigger: 6,
  blockBytes: 512,
});
out("ready");

async function writer(w: number): Promise<void> {
  const mine: string[] = [];
  for (let n = 0;; n++) {
    const c = rand();
    const sync = rand() < 0.7;
    const value = `c${cycle}w${w}n${n}` + "x".repeat(Math.floor(rand() * 300));
    if (c < 0.6) {
      const key = `p/${cycle}/${w}/${n}`;
      await db.put(key, value, { sync });
      mine.push(key);
      out(`put ${key} ${value} ${sync ? "sync" : "nosync"}`);
    } else if (c < 0.75 && mine.length > 0) {
      const key = mine.splice(Math.floor(rand() * mine.length), 1)[0];
      out(`deleting ${key}`);
      await db.delete(key, { sync });
      out(`del ${key} ${sync ? "sync" : "nosync"}`);
    } else {
      const id = `b/${cycle}/${w}/${n}`;
      const count = 2 + Math.floor(rand() * 20);
      const bv = `n${count}-${value}`;
      const ops = Array.from(
        { length: count },
        (_, j) => ({ type: "put" as const, key: `${id}/${j}`, value: bv }),
      );
      await db.write(ops, { sync });
      out(`batch ${id} ${count} ${bv} ${sync ? "sync" : "nosync"}`);
    }
  }
}

await Promise.all(Array.from({ length: 6 }, (_, w) => writer(w)));
