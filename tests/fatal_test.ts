// A node whose disk fails (fsync error) reports unhealthy, logs why and exits non-zero, so that
// a supervisor restarts it; it never retries the failed fsync (issue 11 item 5).
import assert from "node:assert/strict";
import { join } from "node:path";
import { httpPut, TestCluster, waitFor } from "./harness.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("a node whose fsync fails reports unhealthy, logs why and exits with code 1", async () => {
  const c = await TestCluster.create({ size: 1, storage: "lsm" });
  const trigger = join(c.dir, "fail-fsync");
  const n = c.nodes.get(1)!;
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(ROOT, "tests/failing_disk_node.ts"),
      "--config",
      c.configPath,
      "--id",
      "1",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", GOKV_TEST_FAIL_SYNC_FILE: trigger },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = proc.output();
  try {
    await waitFor(() => httpPut(n.http, "a", "1"), 60_000, "a first write").catch(async (e) => {
      try {
        proc.kill("SIGKILL");
      } catch { /* exited */ }
      const r = await out;
      throw new Error(`${e}; stderr: ${new TextDecoder().decode(r.stderr).slice(-2000)}`);
    });
    const health = async () => {
      try {
        const r = await fetch(`http://${n.http}/healthz`, { signal: AbortSignal.timeout(2000) });
        return { status: r.status, body: await r.json() };
      } catch {
        return null;
      }
    };
    assert.equal((await health())?.status, 200);
    await Deno.writeTextFile(trigger, "");
    assert.equal(await httpPut(n.http, "b", "2"), false, "a write after the failure is refused");
    const res = await Promise.race([
      out,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("the node did not exit within 30 s")), 30_000)
      ),
    ]);
    const stderr = new TextDecoder().decode(res.stderr);
    assert.equal(res.code, 1, `exit code 1 (stderr: ${stderr.slice(-2000)})`);
    assert.match(stderr, /node halted on a fatal error/);
    assert.match(stderr, /injected fsync failure/);
    assert.match(stderr, /syncs after the failure: 0/, "the failed fsync is never retried");
  } finally {
    try {
      proc.kill("SIGKILL");
    } catch { /* exited */ }
    await out.catch(() => {});
    await Deno.remove(c.dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a node whose state-machine LSM fails in the background (a compaction reads a corrupt table), with no write after it, halts, logs why and exits with code 1", async () => {
  // lsm: flush at 64 KiB, compact two L0 tables. The first table is corrupted on disk, then a
  // second flush starts the compaction that reads it: the engine fails in the background after
  // every write was acknowledged, and no further write comes to fail on it. The node must halt
  // on the engine's report alone.
  const c = await TestCluster.create({
    size: 1,
    storage: "lsm",
    extraYaml: "lsm:\n  memtable_bytes: 65536\n  l0_compaction_trigger: 2\n",
  });
  const n = c.nodes.get(1)!;
  const smDir = join(c.dir, "data", "node-1", "sm", "sm-000001");
  const tables = async () => {
    const out: string[] = [];
    try {
      for await (const e of Deno.readDir(smDir)) if (e.name.endsWith(".sst")) out.push(e.name);
    } catch { /* not created yet */ }
    return out.sort();
  };
  const value = "v".repeat(2000);
  /** Writes until the engine flushed one more table (the state machine's LSM has no WAL of its
   * own: a full memtable becomes a table), then stops. A refused write ends it too (the node may
   * halt on the failure the flush's compaction runs into). */
  const writeUntilFlush = async (prefix: string) => {
    const before = (await tables()).length;
    for (let i = 0; i < 500; i++) {
      if (!await httpPut(n.http, `${prefix}${i}`, value)) return;
      if ((await tables()).length > before) return;
    }
    throw new Error("no flush after 500 writes");
  };
  const proc = c.start(1);
  try {
    await c.waitLeader();
    await writeUntilFlush("a");
    await waitFor(async () => (await tables()).length >= 1, 30_000, "a flush");
    const [first] = await tables();
    const f = await Deno.open(join(smDir, first), { read: true, write: true });
    try {
      await f.write(new Uint8Array(512).fill(0x5a)); // the first data block
    } finally {
      f.close();
    }
    // The second flush starts the compaction; no write follows it. The same keys again: the
    // two tables overlap, so the compaction merges them (reads the corrupt one) instead of
    // moving one down untouched.
    await writeUntilFlush("a");
    const health = async () => {
      try {
        const r = await fetch(`http://${n.http}/healthz`, { signal: AbortSignal.timeout(2000) });
        return r.status;
      } catch {
        return null;
      }
    };
    const res = await Promise.race([
      proc.status,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("the node did not exit within 30 s")), 30_000)
      ),
    ]).catch(async (e) => {
      throw new Error(`${e.message} (healthz ${await health()})\n${(await c.log(1)).slice(-3000)}`);
    });
    const log = await c.log(1);
    assert.equal(res.code, 1, `exit code 1:\n${log.slice(-2000)}`);
    assert.match(log, /state machine storage failed/);
    assert.match(log, /node halted on a fatal error/);
    assert.match(log, /corrupt/i);
  } finally {
    await c.stop();
  }
});
