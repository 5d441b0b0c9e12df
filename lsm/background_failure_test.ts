/**
 * Background failures (issue 11 item 14): a compaction worker that crashes mid-merge puts the
 * database in a typed failed state reported once through `onFailure`, and the merge's outputs,
 * which no manifest names, are removed at once (not left on disk until a reopen).
 *
 * The scenario runs in a process of its own (lsm/testdata/worker_crash.ts): Deno prints the
 * worker thread's uncaught error to the process's stderr whatever the parent does with it, so
 * here it is captured and checked instead of printed among the test output.
 */
import assert from "node:assert/strict";

const SCENARIO = new URL("./testdata/worker_crash.ts", import.meta.url).pathname;

Deno.test("a compaction worker that crashes mid-merge fails the database, typed and reported once, and its outputs are removed", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCENARIO],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout), stderr = dec.decode(out.stderr);
  assert.ok(out.success, `the scenario failed (exit ${out.code}):\n${stderr}`);
  assert.equal(stdout.trim(), "ok", stdout);
  // The one thing on stderr: Deno's report of the injected crash in the worker thread (the
  // failure itself went to onFailure, which prints nothing).
  const [report, ...rest] = stderr.split("\n").filter((l) => l.trim() !== "");
  assert.match(report, /^error: Uncaught \(in worker "[^"]*"\) Error: injected worker crash$/);
  // Then only its source line, caret and stack: nothing else was printed.
  for (const l of rest) {
    assert.match(l, /^\s+(at |\^$|throw new Error\("injected worker crash"\);$)/, stderr);
  }
});
