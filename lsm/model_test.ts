/**
 * Randomized model test: long mixed sequences of put / delete / batch / get /
 * scan / snapshot / flush / compact / reopen against an in-memory sorted map,
 * with tiny memtables so flushes and compactions happen constantly.
 */
import assert from "node:assert/strict";
import { LsmDb, type LsmOptions, type ScanOptions, type Snapshot } from "./mod.ts";
import { onlyLiveTables, prng, withTempDir } from "./testutil_test.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function modelScan(m: Map<string, string>, o: ScanOptions): string[] {
  let keys = [...m.keys()].sort((a, b) => Buffer.compare(enc.encode(a), enc.encode(b)));
  const str = (x: unknown) => (typeof x === "string" ? x : dec.decode(x as Uint8Array));
  const cmp = (a: string, b: string) => Buffer.compare(enc.encode(a), enc.encode(b));
  if (o.gte !== undefined) keys = keys.filter((k) => cmp(k, str(o.gte)) >= 0);
  if (o.gt !== undefined) keys = keys.filter((k) => cmp(k, str(o.gt)) > 0);
  if (o.lt !== undefined) keys = keys.filter((k) => cmp(k, str(o.lt)) < 0);
  if (o.lte !== undefined) keys = keys.filter((k) => cmp(k, str(o.lte)) <= 0);
  if (o.prefix !== undefined) keys = keys.filter((k) => k.startsWith(str(o.prefix)));
  if (o.reverse) keys.reverse();
  if (o.limit !== undefined) keys = keys.slice(0, o.limit);
  return keys.map((k) => `${k}=${m.get(k)}`);
}

async function dbScan(it: AsyncIterable<[Uint8Array, Uint8Array]>): Promise<string[]> {
  const out: string[] = [];
  for await (const [k, v] of it) out.push(`${dec.decode(k)}=${dec.decode(v)}`);
  return out;
}

async function runModel(seed: number, steps: number, opts: LsmOptions): Promise<void> {
  const r = prng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const key = () => {
    const n = Math.floor(r() * 300);
    return pick(["a/", "b/", "c/"]) + String(n).padStart(3, "0");
  };
  const val = () => "v" + Math.floor(r() * 1e9).toString(36) + "x".repeat(Math.floor(r() * 120));
  const randomScan = (): ScanOptions => {
    const o: ScanOptions = {};
    const c = r();
    if (c < 0.2) o.prefix = pick(["a/", "b/", "c/", "a/1", "zz"]);
    else if (c < 0.6) {
      if (r() < 0.5) o.gte = key();
      else o.gt = key();
      if (r() < 0.5) o.lt = key();
      else o.lte = key();
    }
    if (r() < 0.4) o.reverse = true;
    if (r() < 0.3) o.limit = Math.floor(r() * 20);
    return o;
  };
  await withTempDir(async (dir) => {
    let db = await LsmDb.open(dir, opts);
    const model = new Map<string, string>();
    let snaps: { snap: Snapshot; model: Map<string, string> }[] = [];
    try {
      for (let step = 0; step < steps; step++) {
        const c = r();
        const ctx = `seed ${seed} step ${step}`;
        if (c < 0.35) {
          const k = key();
          const v = val();
          await db.put(k, v);
          model.set(k, v);
        } else if (c < 0.5) {
          const k = key();
          await db.delete(k);
          model.delete(k);
        } else if (c < 0.6) {
          const ops = Array.from(
            { length: 1 + Math.floor(r() * 20) },
            () =>
              r() < 0.7
                ? { type: "put" as const, key: key(), value: val() }
                : { type: "delete" as const, key: key() },
          );
          await db.write(ops);
          for (const o of ops) o.type === "put" ? model.set(o.key, o.value) : model.delete(o.key);
        } else if (c < 0.8) {
          const k = key();
          const got = await db.get(k);
          assert.equal(
            got === undefined ? undefined : dec.decode(got),
            model.get(k),
            `${ctx} get ${k}`,
          );
        } else if (c < 0.88) {
          const o = randomScan();
          assert.deepEqual(
            await dbScan(db.scan(o)),
            modelScan(model, o),
            `${ctx} scan ${JSON.stringify(o)}`,
          );
        } else if (c < 0.91) {
          if (snaps.length < 4) snaps.push({ snap: db.snapshot(), model: new Map(model) });
        } else if (c < 0.94) {
          if (snaps.length > 0) {
            const i = Math.floor(r() * snaps.length);
            const { snap, model: sm } = snaps[i];
            const k = key();
            const got = await snap.get(k);
            assert.equal(
              got === undefined ? undefined : dec.decode(got),
              sm.get(k),
              `${ctx} snapshot get`,
            );
            const o = randomScan();
            assert.deepEqual(await dbScan(snap.scan(o)), modelScan(sm, o), `${ctx} snapshot scan`);
            if (r() < 0.5) {
              snap.release();
              snaps.splice(i, 1);
            }
          }
        } else if (c < 0.96) {
          await db.flush();
        } else if (c < 0.975) {
          await db.compact(r() < 0.5 ? {} : { start: key(), end: "c/999" });
          await onlyLiveTables(db, dir, `${ctx}: tables on disk against live tables`);
        } else {
          for (const x of snaps) x.snap.release();
          snaps = [];
          await db.close();
          db = await LsmDb.open(dir, opts);
        }
      }
      assert.deepEqual(await dbScan(db.scan()), modelScan(model, {}), `seed ${seed} final scan`);
      const st = db.stats();
      assert.ok(st.flushes > 0 || st.levels.some((l) => l.files > 0));
      await db.compact();
      await onlyLiveTables(db, dir, `seed ${seed} final: tables on disk against live tables`);
    } finally {
      for (const x of snaps) x.snap.release();
      await db.close();
    }
  });
}

const tiny: LsmOptions = {
  memtableBytes: 8 * 1024,
  blockBytes: 128,
  targetFileBytes: 4 * 1024,
  levelBaseBytes: 16 * 1024,
  levelMultiplier: 4,
  l0CompactionTrigger: 2,
  l0StopTrigger: 4,
  blockCacheBytes: 16 * 1024,
};

for (const seed of [1, 2, 3]) {
  Deno.test(`model: random operations match a sorted map (seed ${seed}, workers)`, async () => {
    await runModel(seed, 1500, tiny);
  });
}

for (const seed of [4, 5]) {
  Deno.test(`model: random operations match a sorted map (seed ${seed}, main-thread background)`, async () => {
    await runModel(seed, 1500, {
      ...tiny,
      backgroundWorker: false,
      bloomBitsPerKey: seed === 5 ? 0 : 10,
    });
  });
}
