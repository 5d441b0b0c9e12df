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
