/**
 * Limits and paged scans against real node processes (issue 12): nothing over a limit reaches the
 * Raft log, and a scan over more data than one frame holds completes, paged, with every node up.
 */
import assert from "node:assert/strict";
import { TestCluster, waitFor } from "./harness.ts";
import { Client } from "../client/client.ts";
import { LimitError } from "../client/errors.ts";
import { MAX_KEY_BYTES } from "../config/limits.ts";

const RAFT = "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n";

async function commitIndex(c: TestCluster, id: number): Promise<number> {
  return (await c.status(id)).commitIndex as number;
}

Deno.test("a 65,536-byte key is refused with a LimitError before it enters the log", async () => {
  const c = await TestCluster.create({ size: 3, storage: "memory" });
  let kv: Client | undefined;
  try {
    c.startAll();
    const leader = await c.waitLeader();
    kv = await Client.connect({ endpoints: c.endpoints().split(","), timeoutMs: 10_000 });
    await kv.put("warm", "up");
    // Let the commit index settle (the leader's no-op, the write, and the cluster id's entry,
    // which the first leader proposes on its own).
    await waitFor(
      async () => (await commitIndex(c, leader)) >= 2 && (await c.status(leader)).clusterId,
      5_000,
      "commit",
    );
    const before = await commitIndex(c, leader);
    const key = new Uint8Array(MAX_KEY_BYTES + 1).fill(0x6b); // 65,536 bytes

    for (const op of [() => kv!.put(key, "v"), () => kv!.delete(key)]) {
      const e = await op().then(() => undefined, (e) => e);
      assert.ok(e instanceof LimitError, `expected LimitError, got ${e}`);
      assert.equal(e.limit, "key_bytes");
      assert.equal(e.max, MAX_KEY_BYTES);
    }
    const cli = await c.cli(["delete", "k".repeat(MAX_KEY_BYTES + 1)]);
    assert.equal(cli.code, 1);
    assert.equal(cli.stderr.trim().split("\n").length, 1, cli.stderr.slice(0, 500));
    assert.match(cli.stderr, /LimitError: key_bytes limit exceeded: 65536 > 65535/);

    // Nothing was proposed: the commit index did not move, and the cluster still works.
    assert.equal(await commitIndex(c, leader), before);
    await kv.put(new Uint8Array(MAX_KEY_BYTES).fill(0x6b), "largest key");
    assert.equal(
      await kv.getString(new Uint8Array(MAX_KEY_BYTES).fill(0x6b)),
      "largest key",
    );
  } finally {
    await kv?.close();
    await c.stop();
  }
});

Deno.test("nine 8 MiB values then a full scan: every node stays up, the scan pages all 9", async () => {
  const c = await TestCluster.create({ size: 3, storage: "memory", extraYaml: RAFT });
  let kv: Client | undefined;
  try {
    c.startAll();
    await c.waitLeader();
    kv = await Client.connect({ endpoints: c.endpoints().split(","), timeoutMs: 30_000 });
    const value = new Uint8Array(8 * 1024 * 1024);
    for (let i = 0; i < 9; i++) {
      value.fill(0x61 + i);
      await kv.put(`blob${i}`, value);
    }
    const cli = await c.cli(["scan", "--prefix", "blob"]);
    assert.equal(cli.code, 0, cli.stderr);
    const lines = cli.stdout.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 9);
    lines.forEach((l, i) => {
      const [k, v] = l.split("\t");
      assert.equal(k, `blob${i}`);
      assert.equal(v.length, 8 * 1024 * 1024);
      assert.equal(v[0], String.fromCharCode(0x61 + i));
    });
    // The library's iterator too, one page at a time; --limit caps the total.
    let n = 0;
    for await (const p of kv.list({ prefix: "blob" })) {
      assert.equal(p.value.length, 8 * 1024 * 1024);
      n++;
    }
    assert.equal(n, 9);
    const limited = await c.cli(["scan", "--prefix", "blob", "--limit", "2"]);
    assert.equal(limited.stdout.split("\n").filter((l) => l !== "").length, 2);
    // Every node is still running and answering.
    for (const id of c.nodes.keys()) {
      assert.ok(c.procs.has(id));
      const st = await c.status(id);
      assert.equal(st.id, id);
    }
    const exited = await Promise.race([
      ...[...c.procs.values()].map((p) => p.status.then(() => true)),
      new Promise<false>((r) => setTimeout(() => r(false), 200)),
    ]);
    assert.equal(exited, false, "no node exited");
  } finally {
    await kv?.close();
    await c.stop();
  }
});
