/** bench/cluster_bench.ts's command line: usage, exit codes (nothing is started). */
import assert from "node:assert/strict";

const SCRIPT = new URL("./cluster_bench.ts", import.meta.url).pathname;

async function run(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("bench:cluster --help prints the usage and exits 0 without starting anything", async () => {
  for (const flag of ["--help", "-h"]) {
    const r = await run(flag);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes("Usage: deno task bench:cluster"), r.stdout);
    assert.ok(r.stdout.includes("--baseline <dir>"), r.stdout);
    assert.ok(!r.stderr.includes("TypeError"), r.stderr);
  }
});

Deno.test("bench:cluster refuses an unknown flag or a bad value with exit 2 and a message", async () => {
  const cases: Array<[string[], string]> = [
    [["--bogus"], "Unknown option '--bogus'"],
    [["--n", "x"], "--n must be a positive integer, got 'x'"],
    [["--clients", "16,0"], "--clients must be a positive integer, got '0'"],
    [["--ops", "put,scan"], "--ops takes put and get, got 'scan'"],
    [["--etcd-client", "java"], "--etcd-client is go or etcd3, got 'java'"],
  ];
  for (const [args, message] of cases) {
    const r = await run(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.ok(r.stderr.includes(message), r.stderr);
    assert.ok(r.stderr.includes("Usage: deno task bench:cluster"), r.stderr);
    assert.ok(!r.stderr.includes("TypeError"), r.stderr);
  }
});
