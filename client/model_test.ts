/**
 * The client library's data model API (getEntry, getMany, list with versionstamps, atomic
 * operations, TTL) against a fake node over the binary protocol.
 */
import assert from "node:assert/strict";
import { Client } from "./client.ts";
import { InvalidArgumentError, LimitError, MutationTypeError } from "./errors.ts";
import { defaultNodeLimits } from "../config/limits.ts";
import { type FakeNode, startFakeNode } from "../server/testing.ts";
import { TimeoutError as RaftTimeoutError } from "../raft/errors.ts";
import { readU64le, ValueEncoding } from "../storage/kv_model.ts";

const dec = new TextDecoder();

async function withNode(fn: (kv: Client, n: FakeNode) => Promise<void>) {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await fn(kv, n);
  } finally {
    await kv.close();
    await n.close();
  }
}

Deno.test("getEntry and getMany return values with versionstamps; missing keys read as nulls", async () => {
  await withNode(async (kv) => {
    await kv.put("a", "1");
    await kv.put("b", "2");
    const a = await kv.getEntry("a");
    assert.equal(dec.decode(a.value!), "1");
    assert.match(a.versionstamp!, /^[0-9a-f]{20}$/);
    assert.equal(a.encoding, ValueEncoding.BYTES);
    const [ea, eb, em] = await kv.getMany(["a", "b", "missing"], { consistency: "serializable" });
    assert.deepEqual(ea, a);
    assert.ok(eb.versionstamp! > ea.versionstamp!, "later writes have larger versionstamps");
    assert.deepEqual(em, {
      key: new TextEncoder().encode("missing"),
      value: null,
      versionstamp: null,
    });
  });
});

Deno.test("list and scan yield versionstamps, forward and reverse, across pages", async () => {
  await withNode(async (kv) => {
    for (const k of ["p1", "p2", "p3", "p4", "q"]) await kv.put(k, k);
    const fwd = await kv.scan({ prefix: "p", pageSize: 2 });
    assert.deepEqual(fwd.map((e) => dec.decode(e.key)), ["p1", "p2", "p3", "p4"]);
    assert.ok(fwd.every((e) => /^[0-9a-f]{20}$/.test(e.versionstamp!)));
    const rev = await kv.scan({ prefix: "p", pageSize: 3, reverse: true });
    assert.deepEqual(rev.map((e) => dec.decode(e.key)), ["p4", "p3", "p2", "p1"]);
    assert.deepEqual((await kv.scan({ reverse: true, limit: 1 })).map((e) => dec.decode(e.key)), [
      "q",
    ]);
  });
});

Deno.test("atomic: check-and-set loop, sum, min, max, delete, versionstamped keys", async () => {
  await withNode(async (kv) => {
    // A CAS retry loop: the first commit of an absent key wins, a stale check fails.
    const first = await kv.atomic().check("lock", null).set("lock", "me").commit();
    assert.equal(first.ok, true);
    const again = await kv.atomic().check("lock", null).set("lock", "you").commit();
    assert.deepEqual(again, { ok: false, failedChecks: [0] });
    const e = await kv.getEntry("lock");
    assert.equal(e.versionstamp, first.ok ? first.versionstamp : "");
    const swap = await kv.atomic().check("lock", e.versionstamp).delete("lock").commit();
    assert.equal(swap.ok, true);
    assert.equal((await kv.getEntry("lock")).value, null);

    await kv.atomic().sum("n", 40n).commit();
    await kv.atomic().sum("n", 2n).max("hi", 5n).min("lo", 5n).commit();
    await kv.atomic().max("hi", 3n).min("lo", 3n).commit();
    const [n, hi, lo] = await kv.getMany(["n", "hi", "lo"]);
    assert.deepEqual([n, hi, lo].map((x) => readU64le(x.value!)), [42n, 5n, 3n]);
    assert.equal(n.encoding, ValueEncoding.LE64);
    await kv.atomic().sum("n", 100n, { max: 50n, clamp: true }).commit();
    assert.equal(readU64le((await kv.getEntry("n")).value!), 50n);

    const r = await kv.atomic().setVersionstampedKey("q/", "job").commit();
    const q = await kv.scan({ prefix: "q/" });
    assert.equal(q.length, 1);
    assert.equal(dec.decode(q[0].key), `q/\u0002${r.ok ? r.versionstamp : ""}\u0000`);
  });
});

Deno.test("atomic: a sum on a non-u64 value is a MutationTypeError and applies nothing", async () => {
  await withNode(async (kv) => {
    await kv.put("text", "hello");
    await assert.rejects(
      () => kv.atomic().set("other", "x").sum("text", 1n).commit(),
      (e: unknown) =>
        e instanceof MutationTypeError &&
        e.message === "Failed to perform 'sum' mutation on a non-U64 value in the database",
    );
    assert.equal((await kv.getEntry("other")).value, null);
  });
});

Deno.test("atomic: bad arguments are refused before anything is sent; limits by the node before it proposes", async () => {
  await withNode(async (kv, n) => {
    const before = n.raft.proposals;
    assert.throws(() => kv.atomic().check("k", "zz"), InvalidArgumentError);
    assert.throws(() => kv.atomic().sum("k", -1n), InvalidArgumentError);
    assert.equal(n.raft.proposals, before, "not even a session registration was proposed");
    // The limits are the node's (configurable): the client does not know them, the node refuses.
    const op = kv.atomic();
    for (let i = 0; i <= defaultNodeLimits().atomicChecks; i++) op.check(`k${i}`, null);
    await assert.rejects(
      () => op.commit(),
      (e) => e instanceof LimitError && e.limit === "atomic_checks",
    );
    assert.ok(n.raft.proposals <= before + 1, "at most the client's session registration");
  });
});

Deno.test("atomic: a commit retried after a lost answer applies once and answers its result", async () => {
  await withNode(async (kv, n) => {
    await kv.atomic().sum("c", 1n).commit();
    // The proposal applies, but the answer is lost: the client retries with the same session seq.
    n.raft.failNext = { error: new RaftTimeoutError("proposal", 10), count: 1, afterApply: true };
    const r = await kv.atomic().sum("c", 1n).commit();
    assert.equal(r.ok, true);
    assert.equal(readU64le((await kv.getEntry("c")).value!), 2n, "applied exactly once");
    const e = await kv.getEntry("c");
    assert.equal(r.ok && r.versionstamp, e.versionstamp, "the retry answered the first commit");
  });
});

Deno.test("putWithTtl sets an expiry time that the entry reports; it is not swept early", async () => {
  await withNode(async (kv, n) => {
    const t0 = Date.now();
    await kv.putWithTtl("ttl", "v", 60_000);
    const e = await kv.getEntry("ttl");
    assert.ok(e.expireAt! >= t0 + 60_000 && e.expireAt! <= Date.now() + 60_000);
    assert.equal(dec.decode(e.value!), "v");
    assert.equal(await n.service.sweepExpired(), 0, "not due by the real clock");
    assert.ok((await kv.getEntry("ttl")).value);
  });
});
