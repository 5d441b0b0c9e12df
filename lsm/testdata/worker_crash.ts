/**
 * The scenario of lsm/background_failure_test.ts, in a process of its own: Deno reports the
 * injected uncaught error of the compaction worker's thread on the process's stderr (even with
 * the parent's "error" listener), where the test captures and checks it. Prints "ok" when every
 * assertion held; an assertion that fails exits non-zero with its message on stderr.
 * Usage: deno run -A lsm/testdata/worker_crash.ts
 */
import assert from "node:assert/strict";
import { BackgroundError, type LsmError } from "../errors.ts";
import { LsmDb } from "../mod.ts";

/** The .sst files in `dir` (completed tables and half-written ones). */
async function tables(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (/\.sst(\.tmp)?$/.test(e.name)) out.push(e.name);
  return out.sort();
}

/** Polls `cond` every 10 ms until it holds; throws after `ms`. */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not reached before deadline");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const dir = await Deno.makeTempDir({ prefix: "lsm_test_" });
try {
  const failures: LsmError[] = [];
  const opts = {
    memtableBytes: 64 * 1024,
    targetFileBytes: 4 * 1024,
    l0CompactionTrigger: 4,
    onFailure: (e: LsmError) => failures.push(e),
  };
  const db = await LsmDb.open(dir, opts);
  const value = new Uint8Array(200).fill(9);
  const key = (i: number) => `k${String(i).padStart(6, "0")}`;
  try {
    // The worker dies when the first merge asks for its third output: two are on disk then.
    (db as unknown as { worker: { crashAfterOutputs(n: number): void } })
      .worker.crashAfterOutputs(2);
    for (let round = 0; round < 4 && failures.length === 0; round++) {
      const ops = [];
      for (let i = 0; i < 300; i++) ops.push({ type: "put" as const, key: key(i), value });
      try {
        await db.write(ops);
        await db.flush();
      } catch (e) {
        // Refused once the crash failed the database.
        assert.equal(e, db.failure);
      }
    }
    await until(() => db.failure !== undefined, 20_000);
    assert.ok(db.failure instanceof BackgroundError, String(db.failure));
    assert.match(db.failure.message, /compaction/);
    assert.match(db.failure.message, /worker crashed/);
    assert.equal(failures.length, 1);
    assert.equal(failures[0], db.failure);
    // Writes are refused with the failure from now on.
    await assert.rejects(db.put("after", "x"), (e) => e === db.failure);
    // Only the live tables are on disk: the two finished outputs of the merge are gone.
    const levels = (db as unknown as { vs: { current: { levels: { number: number }[][] } } })
      .vs.current.levels;
    const expected = levels.flat().map((f) => `${String(f.number).padStart(6, "0")}.sst`).sort();
    assert.deepEqual(await tables(dir), expected);
  } finally {
    await db.close();
  }
  // A reopen recovers every write.
  const again = await LsmDb.open(dir, {});
  try {
    for (const i of [0, 150, 299]) {
      assert.deepEqual(await again.get(key(i)), value, key(i));
    }
  } finally {
    await again.close();
  }
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
console.log("ok");
