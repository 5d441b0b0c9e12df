/**
 * One Deno KV workload with its assertions, run unchanged through the Deno runtime's own client
 * (`Deno.openKv(url)` in a child `deno run --unstable-kv`, see {@link runWorkloadInDeno}) and
 * through gokv's `openKv` (mod.ts), against the KV Connect server of a real cluster or of the
 * in-memory model. Every step checks what Deno KV documents.
 *
 * @module
 */
import assert from "node:assert/strict";

// deno-lint-ignore no-explicit-any
type Any = any;
/** What the workload needs of a `Deno.Kv` (Deno's own or gokv's `Kv`). */
export type KvLike = Any;

/** Options of {@link runKvWorkload}. */
export interface WorkloadOptions {
  /** A key part unique to this run (the database may be shared). */
  run: string;
  /** The KvU64 class of the client (`Deno.KvU64` or gokv's). */
  KvU64: new (v: bigint) => { value: bigint };
  /** How long an expired key may stay readable (ms). */
  expiryBoundMs: number;
}

async function poll<T>(f: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  while (true) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Values of every kind, written by {@link runKvWorkload} under `["wl", run, "v", name]`. */
export const VALUES: [string, unknown][] = [
  ["bytes", new Uint8Array([0, 1, 2, 255])],
  ["string", "héllo"],
  ["number", 1.5],
  ["bigint", -(2n ** 70n)],
  ["date", new Date(86_400_000)],
  ["map", new Map<unknown, unknown>([[1, "one"], ["k", [1, 2]]])],
  ["nested", { u: new Uint8Array([9, 8]), arr: [null, true, { d: new Set(["x"]) }] }],
  ["null", null],
  ["regexp", /a+b/gi],
  ["sparse", [1, , 3]],
];

/** Checks that the values a workload run `run` wrote read back equal (also from the other
 * client: the cross-check), with the u64 as a u64. */
export async function verifyValues(kv: KvLike, run: string): Promise<void> {
  for (const [name, v] of VALUES) {
    const e = await kv.get(["wl", run, "v", name]);
    assert.deepEqual(e.value, v, `value ${name} written by ${run}`);
    assert.match(e.versionstamp, /^[0-9a-f]{20}$/);
  }
  const u = (await kv.get(["wl", run, "u64"])).value;
  assert.equal(u.value, 42n, `the u64 written by ${run}`);
  assert.equal(u.constructor.name, "KvU64");
}

/** Runs every step; returns the versionstamps of its commits in order. */
export async function runKvWorkload(kv: KvLike, o: WorkloadOptions): Promise<string[]> {
  const P = ["wl", o.run];
  const stamps: string[] = [];
  const commit = (r: { ok: boolean; versionstamp?: string }) => {
    assert.equal(r.ok, true);
    assert.match(r.versionstamp!, /^[0-9a-f]{20}$/);
    stamps.push(r.versionstamp!);
    return r.versionstamp!;
  };

  // get / set / delete
  const missing = await kv.get([...P, "missing"]);
  assert.deepEqual(missing, { key: [...P, "missing"], value: null, versionstamp: null });
  const vs = commit(await kv.set([...P, "a"], { x: 1, s: "hi" }));
  const a = await kv.get([...P, "a"]);
  assert.deepEqual(a.key, [...P, "a"]);
  assert.deepEqual(a.value, { x: 1, s: "hi" });
  assert.equal(a.versionstamp, vs);
  for (const [name, v] of VALUES) commit(await kv.set([...P, "v", name], v));
  commit(await kv.set([...P, "u64"], new o.KvU64(42n)));
  await verifyValues(kv, o.run);
  await kv.delete([...P, "a"]);
  assert.equal((await kv.get([...P, "a"])).versionstamp, null);

  // getMany: one snapshot, request order, nulls for absent keys
  const many = await kv.getMany([[...P, "v", "string"], [...P, "nope"], [...P, "v", "number"]]);
  assert.deepEqual(many.map((e: Any) => e.value), ["héllo", null, 1.5]);

  // list with every selector form, limit, reverse, cursors, batch sizes
  const L = [...P, "l"];
  for (let i = 0; i < 10; i++) commit(await kv.set([...L, i], `v${i}`));
  const ids = async (sel: unknown, opts: unknown = {}) => {
    const out: number[] = [];
    for await (const e of kv.list(sel, opts)) out.push(e.key[e.key.length - 1] as number);
    return out;
  };
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  assert.deepEqual(await ids({ prefix: L }), range(0, 10));
  assert.deepEqual(await ids({ prefix: L }, { limit: 3 }), [0, 1, 2]);
  assert.deepEqual(await ids({ prefix: L }, { reverse: true }), range(0, 10).reverse());
  assert.deepEqual(await ids({ prefix: L }, { reverse: true, limit: 2 }), [9, 8]);
  assert.deepEqual(await ids({ prefix: L, start: [...L, 5] }), range(5, 10));
  assert.deepEqual(await ids({ prefix: L, end: [...L, 5] }), range(0, 5));
  assert.deepEqual(await ids({ start: [...L, 2], end: [...L, 7] }), range(2, 7));
  assert.deepEqual(await ids({ prefix: L }, { batchSize: 3 }), range(0, 10));
  assert.deepEqual(await ids({ prefix: L }, { consistency: "eventual" }).then((x) => x.length), 10);
  const it = kv.list({ prefix: L }, { limit: 4 });
  const first: number[] = [];
  for await (const e of it) first.push(e.key[e.key.length - 1]);
  assert.deepEqual(first, [0, 1, 2, 3]);
  assert.deepEqual(await ids({ prefix: L }, { cursor: it.cursor }), range(4, 10));
  const rit = kv.list({ prefix: L }, { limit: 3, reverse: true });
  for await (const _ of rit) { /* drain */ }
  assert.deepEqual(await ids({ prefix: L }, { cursor: rit.cursor, reverse: true }), [
    6,
    5,
    4,
    3,
    2,
    1,
    0,
  ]);
  const entries = [];
  for await (const e of kv.list({ prefix: L }, { limit: 1 })) entries.push(e);
  assert.equal(entries[0].value, "v0");
  assert.match(entries[0].versionstamp, /^[0-9a-f]{20}$/);

  // atomic checks: null and wrong versionstamps fail, right ones commit
  const C = [...P, "c"];
  const cv = commit(await kv.set(C, 1));
  assert.deepEqual(await kv.atomic().check({ key: C, versionstamp: null }).set(C, 2).commit(), {
    ok: false,
  });
  const wrong = cv === "00000000000000000001" ? "00000000000000000002" : "00000000000000000001";
  assert.equal(
    (await kv.atomic().check({ key: C, versionstamp: wrong }).set(C, 2).commit()).ok,
    false,
  );
  assert.equal((await kv.get(C)).value, 1, "a failed check applies nothing");
  commit(await kv.atomic().check({ key: C, versionstamp: cv }).set(C, 3).commit());
  assert.equal((await kv.get(C)).value, 3);
  const fresh = [...P, "fresh"];
  commit(
    await kv.atomic().check({ key: fresh, versionstamp: null }).set(fresh, "new").set(C, 4)
      .commit(),
  );
  const both = await kv.getMany([fresh, C]);
  assert.equal(both[0].versionstamp, both[1].versionstamp, "one commit, one versionstamp");

  // sum / min / max and their type errors
  const N = [...P, "n"];
  commit(await kv.atomic().sum(N, 5n).commit());
  commit(await kv.atomic().sum(N, 3n).commit());
  assert.equal((await kv.get(N)).value.value, 8n);
  commit(await kv.atomic().min(N, 4n).commit());
  assert.equal((await kv.get(N)).value.value, 4n);
  commit(await kv.atomic().max(N, 100n).commit());
  assert.equal((await kv.get(N)).value.value, 100n);
  commit(await kv.set(N, new o.KvU64(2n ** 64n - 1n)));
  commit(await kv.atomic().sum(N, 2n).commit());
  assert.equal((await kv.get(N)).value.value, 1n, "sum wraps at 2^64");
  commit(
    await kv.atomic().mutate({ type: "min", key: [...P, "n2"], value: new o.KvU64(7n) }).commit(),
  );
  assert.equal((await kv.get([...P, "n2"])).value.value, 7n, "min on an absent key stores it");
  const S = [...P, "s"];
  commit(await kv.set(S, "text"));
  for (const op of ["sum", "min", "max"] as const) {
    await assert.rejects(
      () => kv.atomic()[op](S, 1n).commit(),
      new RegExp(`Failed to perform '${op}' mutation on a non-U64 value in the database`),
    );
  }
  assert.equal((await kv.get(S)).value, "text");

  // expireIn: readable at first, gone within the bound, never before its time
  const E = [...P, "e"];
  const t0 = Date.now();
  commit(await kv.set(E, "soon", { expireIn: 1000 }));
  const early = await kv.get(E);
  if (Date.now() - t0 < 1000) assert.equal(early.value, "soon", "expired before its time");
  await poll(
    async () => (await kv.get(E)).value === null ? true : undefined,
    1000 + o.expiryBoundMs,
    "an expired key to disappear",
  );
  assert.ok(Date.now() - t0 >= 1000, "gone before its time");

  // watch: the initial state, then each change
  const W1 = [...P, "w1"], W2 = [...P, "w2"];
  commit(await kv.set(W2, "two"));
  const reader = kv.watch([W1, W2]).getReader();
  try {
    const init = (await reader.read()).value;
    assert.deepEqual(init.map((e: Any) => e.value), [null, "two"]);
    const set1 = commit(await kv.set(W1, "one"));
    let ev = (await reader.read()).value;
    assert.deepEqual(ev.map((e: Any) => e.value), ["one", "two"]);
    assert.equal(ev[0].versionstamp, set1);
    await kv.delete(W2);
    ev = (await reader.read()).value;
    assert.deepEqual(ev.map((e: Any) => e.value), ["one", null]);
  } finally {
    await reader.cancel();
  }

  // limits: a 2,049-byte key, a 65,537-byte value and 11 checks are refused
  await assert.rejects(
    async () => await kv.set([new Uint8Array(2049 - 2)], 1),
    /Key too large for write|key size limit/,
  );
  await assert.rejects(
    async () => await kv.set([...P, "big"], new Uint8Array(65537)),
    /Value too large|value size limit/,
  );
  const op = kv.atomic();
  for (let i = 0; i < 11; i++) op.check({ key: [...P, "chk", i], versionstamp: null });
  await assert.rejects(() => op.set([...P, "chk"], 1).commit(), /Too many checks/);
  assert.equal((await kv.get([...P, "chk"])).value, null);

  // versionstamps strictly increase
  for (let i = 1; i < stamps.length; i++) {
    assert.ok(stamps[i] > stamps[i - 1], `versionstamp ${stamps[i]} after ${stamps[i - 1]}`);
  }
  return stamps;
}

/** Runs `code` (with `kv` open through `Deno.openKv(url)` and this module imported as `wl`)
 * in a child `deno run --unstable-kv`; resolves with the JSON its last line prints. */
export async function runInDeno(url: string, token: string, code: string): Promise<unknown> {
  const dir = await Deno.makeTempDir({ prefix: "gokv-kvwl-" });
  try {
    const script = `${dir}/workload.ts`;
    await Deno.writeTextFile(
      script,
      `import * as wl from ${JSON.stringify(import.meta.url)};
       const kv = await Deno.openKv(${JSON.stringify(url)});
       const result = await (async () => { ${code} })();
       kv.close();
       console.log(JSON.stringify(result ?? null));`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", script],
      env: { DENO_KV_ACCESS_TOKEN: token, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    if (out.code !== 0) {
      throw new Error(
        `Deno child failed (${out.code}):\n${stdout}\n${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return JSON.parse(stdout.trim().split("\n").pop()!);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs {@link runKvWorkload} through the Deno runtime's own client; its versionstamps. */
export async function runWorkloadInDeno(
  url: string,
  token: string,
  run: string,
  expiryBoundMs: number,
): Promise<string[]> {
  return await runInDeno(
    url,
    token,
    `return await wl.runKvWorkload(kv, { run: ${JSON.stringify(run)}, KvU64: Deno.KvU64, ` +
      `expiryBoundMs: ${expiryBoundMs} });`,
  ) as string[];
}
