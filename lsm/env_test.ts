import assert from "node:assert/strict";
import { denoEnv, type Env, mkdirDurable, writeFileAtomicSync, writeFully } from "./env.ts";
import { FaultEnv, InjectedIoError, SimulatedCrashError } from "./fault_env.ts";
import { b, s, withTempDir } from "./testutil_test.ts";

/** The same behaviour is required of every Env. */
function conformance(env: Env, dir: string): void {
  mkdirDurable(env, `${dir}/a/b`);
  assert.ok(env.statSync(`${dir}/a/b`).isDirectory);
  const f = env.openSync(`${dir}/a/b/x`, { read: true, write: true, create: true, truncate: true });
  writeFully(f, b("hello "));
  writeFully(f, b("world"));
  assert.equal(f.sizeSync(), 11);
  const buf = new Uint8Array(5);
  assert.equal(f.readAtSync(buf, 6), 5);
  assert.equal(s(buf), "world");
  writeFully(f, b("!"));
  assert.equal(s(env.readFileSync(`${dir}/a/b/x`)), "hello world!");
  f.truncateSync(5);
  writeFully(f, b("?"));
  f.syncDataSync();
  f.close();
  assert.equal(s(env.readFileSync(`${dir}/a/b/x`)), "hello?");
  const r = env.openSync(`${dir}/a/b/x`, { read: true });
  const big = new Uint8Array(100);
  assert.equal(r.readAtSync(big, 0), 6);
  assert.equal(r.readAtSync(big, 6), 0);
  r.close();
  const a = env.openSync(`${dir}/a/b/x`, { write: true, append: true });
  writeFully(a, b("!"));
  a.close();
  assert.equal(env.statSync(`${dir}/a/b/x`).size, 7);
  env.renameSync(`${dir}/a/b/x`, `${dir}/a/b/y`);
  assert.throws(() => env.statSync(`${dir}/a/b/x`), Deno.errors.NotFound);
  assert.throws(() => env.readFileSync(`${dir}/a/b/x`), Deno.errors.NotFound);
  assert.throws(() => env.openSync(`${dir}/a/b/x`, { read: true }), Deno.errors.NotFound);
  writeFileAtomicSync(env, `${dir}/a/b/z`, b("atomic"));
  const names = env.readDirSync(`${dir}/a/b`).map((e) => e.name).sort();
  assert.deepEqual(names, ["y", "z"]);
  assert.ok(env.readDirSync(`${dir}/a`).every((e) => e.isDirectory && !e.isFile));
  env.syncDirSync(`${dir}/a/b`);
  const l1 = env.tryLockSync(`${dir}/a/LOCK`);
  assert.ok(l1);
  assert.equal(env.tryLockSync(`${dir}/a/LOCK`), undefined);
  l1.release();
  const l2 = env.tryLockSync(`${dir}/a/LOCK`);
  assert.ok(l2);
  l2.release();
  env.removeSync(`${dir}/a/b/y`);
  assert.throws(() => env.removeSync(`${dir}/a/b/y`), Deno.errors.NotFound);
  assert.throws(() => env.mkdirSync(`${dir}/a`), Deno.errors.AlreadyExists);
  env.mkdirSync(`${dir}/a`, { recursive: true });
  env.removeSync(`${dir}/a`, { recursive: true });
  assert.throws(() => env.statSync(`${dir}/a`), Deno.errors.NotFound);
}

Deno.test("env: denoEnv passes the Env conformance checks", async () => {
  await withTempDir((dir) => conformance(denoEnv, dir));
});

Deno.test("env: FaultEnv passes the Env conformance checks", () => {
  conformance(new FaultEnv(), "/db");
  conformance(new FaultEnv(), "rel/dir");
});

Deno.test("fault env: a crash keeps only fdatasynced bytes and fsynced directory entries", () => {
  let env = new FaultEnv();
  mkdirDurable(env, "/d");
  const f = env.openSync("/d/wal", { write: true, create: true });
  writeFully(f, b("synced|"));
  f.syncDataSync();
  env.syncDirSync("/d");
  writeFully(f, b("lost"));
  writeFileAtomicSync(env, "/d/kept", b("k"));
  const g = env.openSync("/d/new", { write: true, create: true });
  writeFully(g, b("data"));
  g.syncDataSync(); // content durable, but its directory entry is not
  env.mkdirSync("/d/sub");
  env.renameSync("/d/kept", "/d/renamed"); // not fsynced: reverts
  env.removeSync("/d/wal"); // not fsynced: comes back
  assert.equal(env.tryLockSync("/d/LOCK") !== undefined, true);
  env = env.crash();
  assert.deepEqual(env.listFiles(), ["/d/kept", "/d/wal"]);
  assert.equal(s(env.readFileSync("/d/wal")), "synced|");
  assert.equal(s(env.readFileSync("/d/kept")), "k");
  assert.throws(() => env.statSync("/d/sub"), Deno.errors.NotFound);
  assert.notEqual(env.tryLockSync("/d/LOCK"), undefined, "locks die with the process");
});

Deno.test("fault env: the crashed process's views and handles are dead", () => {
  const env = new FaultEnv();
  mkdirDurable(env, "/d");
  const f = env.openSync("/d/x", { write: true, create: true });
  env.crashAtOp(env.opCount + 2);
  writeFully(f, b("a"));
  assert.throws(() => f.writeSync(b("b")), SimulatedCrashError);
  assert.ok(env.crashed);
  assert.throws(() => f.writeSync(b("c")), SimulatedCrashError);
  assert.throws(() => env.openSync("/d/y", { write: true, create: true }), SimulatedCrashError);
  assert.throws(() => env.readDirSync("/d"), SimulatedCrashError);
  const next = env.restart();
  assert.equal(next.crashed, false);
  assert.deepEqual(next.readDirSync("/d").map((e) => e.name), []);
  next.openSync("/d/y", { write: true, create: true }).close();
});

Deno.test("fault env: torn writes keep a seeded prefix of the unsynced tail", () => {
  const run = (seed: number): number[] => {
    const lens: number[] = [];
    let env = new FaultEnv({ seed, tornWrites: true });
    mkdirDurable(env, "/d");
    for (let i = 0; i < 20; i++) {
      const f = env.openSync(`/d/f${i}`, { write: true, create: true });
      writeFully(f, new Uint8Array(100).fill(7));
      f.syncDataSync();
      writeFully(f, new Uint8Array(1000).fill(9));
      env.syncDirSync("/d");
      env = env.crash();
      const got = env.readFileSync(`/d/f${i}`);
      assert.ok(got.length >= 100 && got.length <= 1100);
      assert.ok(got.subarray(0, 100).every((x) => x === 7), "synced bytes intact");
      assert.ok(got.subarray(100).every((x) => x === 9 || x === 0), "tail is a prefix or zeros");
      lens.push(got.length);
    }
    return lens;
  };
  const a = run(5);
  assert.deepEqual(run(5), a, "same seed, same crash outcome");
  assert.ok(new Set(a).size > 5, "tear lengths vary");
  assert.notDeepEqual(run(6), a);
});

Deno.test("fault env: overwritten synced bytes go back to their synced content", () => {
  let env = new FaultEnv();
  const f = env.openSync("/x", { write: true, create: true });
  writeFully(f, b("abcdef"));
  f.syncDataSync();
  env.syncDirSync("/");
  f.truncateSync(2);
  writeFully(f, b("ZZ"));
  assert.equal(s(env.readFileSync("/x")), "abZZ");
  env = env.crash();
  assert.equal(s(env.readFileSync("/x")), "abcdef");
});

Deno.test("fault env: injected EIO, short writes, async syncs and bit flips", async () => {
  let env = new FaultEnv({ seed: 3 });
  const f = env.openSync("/x", { write: true, create: true });
  env.syncDirSync("/");
  env.onOp = (c) => c.op === "sync" ? "eio" : c.op === "write" ? "short" : undefined;
  const n = f.writeSync(new Uint8Array(100).fill(1));
  assert.ok(n < 100);
  assert.equal(f.sizeSync(), n);
  assert.throws(() => f.syncDataSync(), InjectedIoError);
  await assert.rejects(() => f.syncData(), InjectedIoError);
  env.onOp = undefined;
  writeFully(f, new Uint8Array(50).fill(2));
  const p = f.syncData();
  env = env.crash(); // before the asynchronous fdatasync ran
  await assert.rejects(p, SimulatedCrashError);
  assert.equal(env.readFileSync("/x").length, 0);
  const g = env.openSync("/x", { write: true });
  writeFully(g, b("0123456789"));
  await g.syncData();
  const off = env.flipBit("/x", 3);
  assert.equal(off, 3);
  env = env.crash();
  const got = env.readFileSync("/x");
  assert.notEqual(got[3], "3".charCodeAt(0));
  assert.equal(s(got.subarray(4)), "456789");
});
