/**
 * The engine without a write-ahead log (`wal: false`): for a caller that keeps its own log and
 * replays it from what the database holds (gokv's state machine and the Raft log).
 * @module
 */
import assert from "node:assert/strict";
import { LsmDb } from "./db.ts";
import { InvalidArgumentError } from "./errors.ts";
import { FaultEnv } from "./fault_env.ts";
import { b, s } from "./testutil_test.ts";

const DIR = "/db";
const walFiles = (env: FaultEnv) => env.listFiles().filter((f) => f.endsWith(".log"));

Deno.test("wal: false writes no log; a power cut keeps what flush() made durable and drops the rest", async () => {
  let env = new FaultEnv({ seed: 3, tornWrites: true });
  const db = await LsmDb.open(DIR, { env, wal: false, memtableBytes: 4096 });
  for (let i = 0; i < 200; i++) await db.put(`k${i}`, `v${i}`);
  await db.flush();
  for (let i = 200; i < 210; i++) await db.put(`k${i}`, `v${i}`);
  assert.equal(s(await db.get("k205")), "v205");
  assert.deepEqual(walFiles(env), []);
  env = env.crash();
  const again = await LsmDb.open(DIR, { env, wal: false });
  for (let i = 0; i < 200; i++) assert.equal(s(await again.get(`k${i}`)), `v${i}`, `k${i}`);
  // Memtables fill up and flush by themselves too, but the last writes were never flushed.
  assert.equal(await again.get("k209"), undefined);
  await again.close();
});

Deno.test("wal: false refuses sync writes and sync: true as a default", async () => {
  const env = new FaultEnv();
  const db = await LsmDb.open(DIR, { env, wal: false });
  await assert.rejects(() => db.put("a", "1", { sync: true }), InvalidArgumentError);
  await assert.rejects(
    () => db.write([{ type: "put", key: b("a"), value: b("1") }], { sync: true }),
    InvalidArgumentError,
  );
  assert.equal(await db.get("a"), undefined);
  await db.close();
  await assert.rejects(
    () => LsmDb.open(DIR, { env, wal: false, sync: true }),
    InvalidArgumentError,
  );
});

Deno.test("wal: false: a clean close flushes, so a power cut after it loses nothing", async () => {
  let env = new FaultEnv({ seed: 5, tornWrites: true });
  const db = await LsmDb.open(DIR, { env, wal: false });
  for (let i = 0; i < 50; i++) await db.put(`k${i}`, `v${i}`);
  await db.close();
  env = env.crash();
  const again = await LsmDb.open(DIR, { env, wal: false });
  for (let i = 0; i < 50; i++) assert.equal(s(await again.get(`k${i}`)), `v${i}`);
  await again.close();
});

Deno.test("opening without a WAL replays (and then removes) the WAL an earlier open left", async () => {
  let env = new FaultEnv({ seed: 9 });
  const db = await LsmDb.open(DIR, { env });
  for (let i = 0; i < 20; i++) await db.put(`k${i}`, `v${i}`, { sync: true });
  env = env.crash(); // the synced writes are only in the WAL
  const again = await LsmDb.open(DIR, { env, wal: false });
  for (let i = 0; i < 20; i++) assert.equal(s(await again.get(`k${i}`)), `v${i}`);
  assert.deepEqual(walFiles(env), []);
  env = env.crash(); // and they are durable in a table now
  const third = await LsmDb.open(DIR, { env, wal: false });
  for (let i = 0; i < 20; i++) assert.equal(s(await third.get(`k${i}`)), `v${i}`);
  await third.close();
});
