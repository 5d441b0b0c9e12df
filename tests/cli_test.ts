import assert from "node:assert/strict";
import { join } from "node:path";
import { gokv } from "./harness.ts";

Deno.test("gokv --help prints usage and exits 0", async () => {
  const r = await gokv(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage: gokv <command>/);
  for (const cmd of ["server", "set", "get", "delete", "scan", "member", "leader", "status"]) {
    assert.match(r.stdout, new RegExp(`\\n  ${cmd} `));
  }
});

Deno.test("gokv server --help prints the server's usage and exits 0", async () => {
  const r = await gokv(["server", "--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /--config/);
  assert.match(r.stdout, /--id/);
});

Deno.test("every client command has --help that exits 0", async () => {
  for (const cmd of ["set", "get", "delete", "scan", "status"]) {
    const r = await gokv([cmd, "--help"]);
    assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    assert.match(r.stdout, /Usage/i, cmd);
  }
});

Deno.test("an unknown command exits 2 with a usage message, not a stack trace", async () => {
  const r = await gokv(["frobnicate"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
});

Deno.test("an unknown flag exits 2", async () => {
  const r = await gokv(["server", "--bogus-flag"]);
  assert.equal(r.code, 2, r.stderr);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
});

Deno.test("a misspelled config key exits 2 naming the key and its line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "bad.yaml");
    await Deno.writeTextFile(
      file,
      "nodes:\n  - { id: 1, peer: 127.0.0.1:1, client: 127.0.0.1:2, http: 127.0.0.1:3 }\nraft:\n  snapshot_treshold: 100\n",
    );
    const r = await gokv(["server", "--config", file, "--id", "1"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /snapshot_treshold/);
    assert.match(r.stderr, /bad\.yaml:4/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gokv config lists every key with its default", async () => {
  const r = await gokv(["config"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /raft\.snapshot_threshold\s+GOKV_RAFT_SNAPSHOT_THRESHOLD\s+100000/);
});
