/**
 * Power-loss tests of the engine through the fault-injecting env: a seeded
 * workload (puts, deletes, batches, sync and non-sync, concurrent groups,
 * flushes, compactions, clean reopens) runs on tiny memtables until a crash at
 * a seeded operation; sometimes recovery itself is crashed too. After each
 * crash the database must open and hold exactly the writes of some prefix of
 * the issued ones (point-in-time), a prefix that includes every acknowledged
 * sync write. Runs with injected bit flips must open and hold such a state or
 * fail with CorruptionError — never lose data silently.
 *
 * CI runs `LSM_CRASH_SEEDS` seeds (default 1000); `deno task test:long` runs
 * more. Replay one: `LSM_CRASH_SEED=N deno test -A lsm/power_loss_test.ts`.
 * @module
 */
import assert from "node:assert/strict";
import { LsmDb } from "./db.ts";
import { CorruptionError } from "./errors.ts";
import { FaultEnv, SimulatedCrashError } from "./fault_env.ts";
import { readLog } from "./log_reader.ts";
import type { LsmOptions } from "./options.ts";
import { prng } from "./testutil_test.ts";

const DIR = "/db";
const enc = new TextEncoder();
const dec = new TextDecoder();

const OPTS: LsmOptions = {
  memtableBytes: 1024,
  blockBytes: 128,
  blockCacheBytes: 2048,
  l0CompactionTrigger: 2,
  l0StopTrigger: 4,
  levelBaseBytes: 2048,
  levelMultiplier: 2,
  targetFileBytes: 1024,
  maxMemtables: 2,
  onFailure: () => {}, // the crashed process's failures are expected
};

/** One write of the workload: its effect on each key (undefined = delete). */
type Effect = Array<[string, string | undefined]>;

interface Outcome {
  /** Effects of every write handed to the engine, in issue (= sequence) order. */
  writes: Effect[];
  /** Number of writes that must survive: 1 + index of the last acknowledged sync write. */
  mustSurvive: number;
  /** Set when a write refused after an injected I/O error was readable. */
  visibleRefused?: string;
}

/**
 * Runs the seeded workload until it ends, the env crashes or (`injected()`
 * true) an injected I/O error fails an operation; then checks that no refused
 * write is readable.
 */
async function workload(
  env: FaultEnv,
  seed: number,
  steps: number,
  injected: () => boolean = () => false,
): Promise<Outcome> {
  const r = prng(seed);
  const writes: Effect[] = [];
  const refused: number[] = [];
  let visibleRefused: string | undefined;
  let mustSurvive = 0;
  let db: LsmDb | undefined;
  const key = () => `k${Math.floor(r() * 40).toString().padStart(2, "0")}`;
  const value = (i: number) => `v${i}:` + "x".repeat(Math.floor(r() * 120));
  try {
    db = await LsmDb.open(DIR, { ...OPTS, env });
    for (let step = 0; step < steps; step++) {
      const x = r();
      if (x < 0.02) {
        await db.flush();
        continue;
      }
      if (x < 0.03) {
        await db.compact();
        continue;
      }
      if (x < 0.04) {
        const old = db;
        db = undefined;
        await old.close();
        db = await LsmDb.open(DIR, { ...OPTS, env });
        continue;
      }
      // A group of 1-4 concurrent writes (they share group commits).
      const n = 1 + Math.floor(r() * 4);
      const pending: Promise<void>[] = [];
      for (let j = 0; j < n; j++) {
        const i = writes.length;
        const sync = r() < 0.4;
        const y = r();
        let eff: Effect;
        let p: Promise<void>;
        if (y < 0.15) {
          const k = key();
          eff = [[k, undefined]];
          p = db.delete(k, { sync });
        } else if (y < 0.3) {
          const ops = [];
          eff = [];
          for (let m = 0; m < 2 + Math.floor(r() * 3); m++) {
            const k = key();
            const v = value(i);
            ops.push({ type: "put" as const, key: enc.encode(k), value: enc.encode(v) });
            eff.push([k, v]);
          }
          p = db.write(ops, { sync });
        } else {
          const k = key();
          const v = value(i);
          eff = [[k, v]];
          p = db.put(k, v, { sync });
        }
        writes.push(eff);
        pending.push(p.then(() => {
          if (sync && !env.crashed) mustSurvive = Math.max(mustSurvive, i + 1);
        }, (e) => {
          refused.push(i);
          throw e;
        }));
      }
      const res = await Promise.allSettled(pending);
      for (const x of res) if (x.status === "rejected") throw x.reason;
    }
  } catch (e) {
    if (!env.crashed && !injected()) throw e;
    if (!env.crashed && db !== undefined) {
      // The database failed on an injected error: refused writes stay invisible.
      const bad = new Set<string>();
      for (const i of refused) for (const [, v] of writes[i]) if (v !== undefined) bad.add(v);
      for await (const [k, v] of db.scan()) {
        if (bad.has(dec.decode(v))) visibleRefused = `${dec.decode(k)} = ${dec.decode(v)}`;
      }
    }
  } finally {
    await db?.close().catch(() => {});
  }
  return { writes, mustSurvive, visibleRefused };
}

/** Reads the whole database. */
async function contents(db: LsmDb): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for await (const [k, v] of db.scan()) m.set(dec.decode(k), dec.decode(v));
  return m;
}

function sameMap(a: Map<string, string | undefined>, b: Map<string, string>): boolean {
  let n = 0;
  for (const [k, v] of a) {
    if (v === undefined) continue;
    n++;
    if (b.get(k) !== v) return false;
  }
  return n === b.size;
}

/** The prefix length k (>= mustSurvive) whose state equals `got`, or -1. */
function matchingPrefix(o: Outcome, got: Map<string, string>): number {
  const state = new Map<string, string | undefined>();
  for (let k = 0; k <= o.writes.length; k++) {
    if (k > 0) { for (const [key, v] of o.writes[k - 1]) state.set(key, v); }
    if (k >= o.mustSurvive && sameMap(state, got)) return k;
  }
  return -1;
}

/** Record offsets of a record log (up to the first damage). */
function recordStarts(data: Uint8Array, path: string): number[] {
  const offs: number[] = [];
  try {
    readLog(data, path, (_rec, off) => offs.push(off));
  } catch { /* damaged: what was read so far */ }
  return offs;
}

/**
 * Flips one bit in a random file of the database, never in the last record of
 * a record log (where damage is indistinguishable from a torn write). Half the
 * flips in record logs hit a fragment header (length, type, checksums).
 */
function flipRandomBit(env: FaultEnv): string | undefined {
  const files = env.listFiles().filter((f) => !f.endsWith("/LOCK"));
  if (files.length === 0) return undefined;
  for (let tries = 0; tries < 10; tries++) {
    const f = files[env.randomInt(files.length)];
    const data = env.fileBytes(f);
    let end = data.length;
    if (/\.log$|MANIFEST-/.test(f)) {
      const offs = recordStarts(data, f);
      end = offs.length > 0 ? offs[offs.length - 1] : 0;
      if (end > 0 && env.randomInt(2) === 0) {
        const rec = offs[env.randomInt(offs.length - 1)];
        const off = env.flipBit(f, rec + env.randomInt(11));
        return `${f}@${off} (header)`;
      }
    }
    if (end === 0) continue;
    const off = env.flipBit(f, env.randomInt(end));
    return `${f}@${off}`;
  }
  return undefined;
}

export interface CrashRunResult {
  /** "ok", "corruption" (allowed only with a bit flip) or a failure description. */
  result: string;
}

/**
 * One crash point: run seed `seed` until op `crashAt`, crash (maybe again
 * during recovery), reopen and check. Returns undefined when fine, else why not.
 */
export async function crashRun(
  seed: number,
  crashAt: number,
  opts: { steps?: number; flip?: boolean; eio?: boolean } = {},
): Promise<string | undefined> {
  let env = new FaultEnv({ seed, tornWrites: true, reorderSyncs: true });
  let injected = false;
  if (opts.eio) {
    // An I/O error (or a short write) at op `crashAt`; the power cut comes after.
    env.onOp = (c) => {
      if (c.index !== crashAt) return undefined;
      injected = true;
      return c.op === "write" && seed % 2 === 0 ? "short" : "eio";
    };
  } else env.crashAtOp(crashAt);
  const o = await workload(env, seed, opts.steps ?? 60, () => injected);
  env.onOp = undefined;
  if (o.visibleRefused !== undefined) {
    return `a write refused after the injected I/O error is readable: ${o.visibleRefused}`;
  }
  if (!env.crashed) env.crash();
  env = env.restart();
  env.crashAtOp(undefined);
  const r = prng(seed ^ 0x5bd1e995);
  const flipped = opts.flip ? flipRandomBit(env) : undefined;
  // Sometimes crash the recovery too: it must be restartable.
  if (r() < 0.3) {
    env.crashAtOp(env.opCount + 1 + Math.floor(r() * 20));
    try {
      const db = await LsmDb.open(DIR, { ...OPTS, env });
      await db.close().catch(() => {});
    } catch (e) {
      if (!(e instanceof SimulatedCrashError) && !(flipped && e instanceof CorruptionError)) {
        return `recovery (before its crash) failed: ${e}`;
      }
    }
    if (!env.crashed) env.crash();
    env = env.restart();
    env.crashAtOp(undefined);
  }
  let db: LsmDb;
  try {
    db = await LsmDb.open(DIR, { ...OPTS, env });
  } catch (e) {
    if (flipped && e instanceof CorruptionError) return undefined;
    return `open failed: ${e instanceof Error ? e.stack : e}`;
  }
  try {
    let got: Map<string, string>;
    try {
      got = await contents(db);
    } catch (e) {
      if (flipped && e instanceof CorruptionError) return undefined;
      throw e;
    }
    const k = matchingPrefix(o, got);
    if (k < 0) {
      return `state after recovery is no prefix of the writes holding the ${o.mustSurvive} ` +
        `acknowledged sync writes (${o.writes.length} issued, ${got.size} keys found` +
        (flipped ? `, bit flipped at ${flipped})` : ")");
    }
    return undefined;
  } finally {
    await db.close();
  }
}

/** Mutating ops of a full run of `seed` (to spread crash points over it). */
async function opsOfFullRun(seed: number, steps: number): Promise<number> {
  const env = new FaultEnv({ seed });
  await workload(env, seed, steps);
  return env.opCount;
}

/** Runs `count` crash points from `first`; returns the failing seeds and why. */
export async function sweep(
  first: number,
  count: number,
  opts: { steps?: number; flipEvery?: number; eioEvery?: number } = {},
): Promise<Array<[number, string]>> {
  const steps = opts.steps ?? 60;
  const total = await opsOfFullRun(first, steps);
  const fails: Array<[number, string]> = [];
  for (let seed = first; seed < first + count; seed++) {
    const crashAt = 1 + Math.floor(prng(seed * 7919)() * total * 1.1);
    const flip = opts.flipEvery !== undefined && seed % opts.flipEvery === 0;
    const eio = !flip && opts.eioEvery !== undefined && seed % opts.eioEvery === 0;
    const why = await crashRun(seed, crashAt, { steps, flip, eio });
    if (why !== undefined) fails.push([seed, `crash at op ${crashAt}: ${why}`]);
  }
  return fails;
}

/** Every 5th seed flips a bit after the crash, every 3rd other one injects EIO instead of a crash. */
export const MIX = { flipEvery: 5, eioEvery: 3 };
const one = Deno.env.get("LSM_CRASH_SEED");
const seeds = Number(Deno.env.get("LSM_CRASH_SEEDS") ?? 1000);

Deno.test({
  name: `power loss: ${one ? `seed ${one}` : `${seeds} seeded crash points`}, ` +
    "every acknowledged sync write survives, state is a point in time",
  permissions: { env: true },
  async fn() {
    const fails = one ? await sweep(Number(one), 1, MIX) : await sweep(1, seeds, MIX);
    assert.deepEqual(fails.slice(0, 5), [], `${fails.length} of ${one ? 1 : seeds} seeds failed`);
  },
});
