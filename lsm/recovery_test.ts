/**
 * Regression tests of the recovery and I/O-error defects of issue 11 (items
 * 9, 10, 11, 13, 14), run through the fault-injecting env.
 * @module
 */
import assert from "node:assert/strict";
import { LsmDb } from "./db.ts";
import { CorruptionError } from "./errors.ts";
import { FaultEnv } from "./fault_env.ts";
import { readLog } from "./log_reader.ts";
import { b, s } from "./testutil_test.ts";

const DIR = "/db";

function walFiles(env: FaultEnv): string[] {
  return env.listFiles().filter((f) => f.endsWith(".log"));
}

Deno.test("item 9: a corrupted fragment length near the end of a WAL is corruption, not a torn tail", async () => {
  let env = new FaultEnv();
  const db = await LsmDb.open(DIR, { env, memtableBytes: 64 << 20 });
  for (let i = 0; i < 600; i++) await db.put(`key${i}`, "v".repeat(200), { sync: true });
  env = env.crash(); // power loss: only what was synced counts
  const [wal] = walFiles(env).slice(-1);
  const data = env.fileBytes(wal);
  let target = -1;
  readLog(data, wal, (_rec, off) => {
    if (target < 0 && off >= data.length - 40 * 1024) target = off;
  });
  assert.ok(target > 0);
  // Set the length field of that fragment to 0xffff (on the durable disk).
  for (const o of [target + 4, target + 5]) {
    const cur = env.fileBytes(wal)[o];
    for (let bit = 0; bit < 8; bit++) if (!((cur >> bit) & 1)) env.flipBit(wal, o, bit);
    assert.equal(env.fileBytes(wal)[o], 0xff);
  }
  env = env.crash();
  let found = -1;
  try {
    const again = await LsmDb.open(DIR, { env });
    found = 0;
    for (let i = 0; i < 600; i++) if (s(await again.get(`key${i}`)) !== undefined) found++;
    await again.close();
  } catch (e) {
    assert.ok(e instanceof CorruptionError, String(e));
    return;
  }
  assert.equal(found, 600, "synced writes silently truncated");
});
