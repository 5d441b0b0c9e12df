import assert from "node:assert/strict";
import { createKvConnectHandler, type KvConnectOp, type KvScope } from "./kv_connect.ts";
import {
  ACCESS_TOKEN_SUBJECT,
  DataPathTokens,
  type KvSubject,
  staticAccessCheck,
} from "./kv_connect_auth.ts";
import { defaultNodeLimits } from "../config/limits.ts";
import { MemoryKvStore } from "../tests/kv_memory_store.ts";
import { runInDeno, runKvWorkload, runWorkloadInDeno, verifyValues } from "../tests/kv_workload.ts";
import { KvU64, openKv } from "../client/kv.ts";
import {
  AtomicWriteStatus,
  decodeAtomicWriteOutput,
  decodeSnapshotReadOutput,
  encodeAtomicWrite,
  encodeSnapshotRead,
  encodeWatch,
  MutationType,
  ValueEncoding,
} from "../client/kv_connect_codec.ts";
import { encodeKey } from "../client/kv_key.ts";
import { ValueEncoding as StoredEncoding } from "../storage/kv_model.ts";
import { WatchStreams } from "./watch_stream.ts";
import { encodeValue } from "../client/kv_value.ts";

const TOKEN = "test-access-token-1234";
const W: KvSubject = { name: "writer", role: "write" };

/** A KV Connect server over the in-memory model on a loopback port. */
function serve(
  opts: {
    ttlMs?: number;
    now?: () => number;
    access?: string;
    authorize?: (s: KvSubject, op: KvConnectOp, scope: KvScope[]) => void;
  } = {},
) {
  const store = new MemoryKvStore();
  const closing = new AbortController();
  const tokens = new DataPathTokens(opts.access ?? TOKEN, opts.ttlMs ?? 60_000, opts.now);
  const handler = createKvConnectHandler({
    store,
    access: staticAccessCheck(opts.access ?? TOKEN),
    tokens,
    limits: defaultNodeLimits(),
    closing: closing.signal,
    watchPollMs: 20,
    authorize: opts.authorize,
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const body = req.body ? new Uint8Array(await req.arrayBuffer()) : undefined;
    return await handler(req, url, body) ?? new Response("no", { status: 404 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return {
    store,
    tokens,
    base,
    url: `${base}/kv`,
    async close() {
      closing.abort();
      await server.shutdown();
    },
  };
}

async function exchange(url: string, body?: unknown, token = TOKEN) {
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

Deno.test("metadata exchange: version negotiation, endpoints, token, expiry", async () => {
  const s = serve();
  try {
    for (const [versions, want] of [[[1, 2, 3], 3], [[1, 2], 2], [[1], 1], [[2, 7], 2]] as const) {
      const r = await exchange(s.url, { supportedVersions: versions });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.type, "application/json");
      const m = JSON.parse(r.text);
      assert.deepEqual(Object.keys(m).sort(), [
        "databaseId",
        "endpoints",
        "expiresAt",
        "token",
        "version",
      ]);
      assert.equal(m.version, want);
      assert.equal(m.databaseId, s.store.id);
      assert.match(m.databaseId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(m.endpoints[0].consistency, "strong");
      assert.equal(m.endpoints[1].consistency, "eventual");
      // Version 1 clients need absolute URLs; later versions resolve relative ones.
      assert.equal(m.endpoints[0].url, want === 1 ? `${s.base}/kv/v1` : `/kv/v${want}`);
      for (const e of m.endpoints) assert.ok(!e.url.endsWith("/"));
      const exp = Date.parse(m.expiresAt);
      assert.ok(exp > Date.now() + 50_000 && exp <= Date.now() + 60_000);
      assert.deepEqual(s.tokens.verify(m.token, s.store.id).subject, ACCESS_TOKEN_SUBJECT);
    }
    // No body: a version-1-only client.
    assert.equal(JSON.parse((await exchange(s.url)).text).version, 1);
    // Also at the port's root, as `Deno.openKv("http://host:port")` posts there.
    assert.equal((await exchange(`${s.base}/`, { supportedVersions: [3] })).status, 200);
  } finally {
    await s.close();
  }
});

Deno.test("metadata exchange refusals: 4xx with a plain-text message", async () => {
  const s = serve();
  try {
    const cases: [unknown, string | undefined, number, RegExp][] = [
      [{ supportedVersions: [4, 5] }, TOKEN, 400, /negotiate a protocol version/],
      [{ supportedVersions: "3" }, TOKEN, 400, /array of numbers/],
      [{ supportedVersions: [3], extra: 1 }, TOKEN, 400, /Unknown field/],
      [[3], TOKEN, 400, /JSON object/],
      [{ supportedVersions: [3] }, "wrong-token", 401, /Invalid access token/],
    ];
    for (const [body, token, status, re] of cases) {
      const r = await exchange(s.url, body, token);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.match(r.type ?? "", /^text\/plain/);
      assert.match(r.text, re);
    }
    const r = await fetch(s.url, { method: "POST", body: "{not json" });
    assert.equal(r.status, 400);
    await r.body?.cancel();
    const noAuth = await fetch(s.url, { method: "POST", body: '{"supportedVersions":[3]}' });
    assert.equal(noAuth.status, 401);
    assert.match(await noAuth.text(), /Malformed authorization header/);
    // No configured token: KV Connect refuses every exchange.
    const off = serve({ access: "" });
    try {
      assert.equal((await exchange(off.url, { supportedVersions: [3] }, "")).status, 401);
      assert.equal((await exchange(off.url, { supportedVersions: [3] }, "x")).status, 401);
    } finally {
      await off.close();
    }
  } finally {
    await s.close();
  }
});

async function dataPath(
  s: ReturnType<typeof serve>,
  method: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
  version = 3,
) {
  const m = JSON.parse((await exchange(s.url, { supportedVersions: [version] })).text);
  const res = await fetch(`${s.base}/kv/v${version}/${method}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${m.token}`,
      "content-type": "application/x-protobuf",
      ...(version === 1
        ? { "x-transaction-domain-id": m.databaseId }
        : { "x-denokv-database-id": m.databaseId, "x-denokv-version": String(version) }),
      ...headers,
    },
    body: body as Uint8Array<ArrayBuffer>,
  });
  return res;
}

const setOf = (key: unknown[], value: unknown) => {
  const v = encodeValue(value);
  return {
    key: encodeKey(key as never),
    value: v,
    mutationType: MutationType.Set,
    expireAtMs: 0,
    sumMin: new Uint8Array(),
    sumMax: new Uint8Array(),
    sumClamp: false,
  };
};

Deno.test("data path: database id, version header and token are checked", async () => {
  let now = Date.now();
  const s = serve({ ttlMs: 10_000, now: () => now });
  try {
    const read = encodeSnapshotRead({ ranges: [] });
    for (const version of [1, 2, 3]) {
      const ok = await dataPath(s, "snapshot_read", read, {}, version);
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("content-type"), "application/x-protobuf");
      const out = decodeSnapshotReadOutput(new Uint8Array(await ok.arrayBuffer()));
      assert.equal(out.readIsStronglyConsistent, true);
    }
    const bad = async (h: Record<string, string>, status: number, re: RegExp) => {
      const r = await dataPath(s, "snapshot_read", read, h);
      assert.equal(r.status, status);
      assert.match(await r.text(), re);
    };
    await bad({ "x-denokv-database-id": crypto.randomUUID() }, 400, /Invalid database id/);
    await bad({ "x-denokv-version": "2" }, 400, /x-denokv-version must be 3/);
    await bad({ authorization: "Bearer gkv1.e30.AAAA" }, 401, /Invalid access token/);
    const other = new DataPathTokens("another-secret", 10_000).issue(s.store.id, W);
    await bad({ authorization: `Bearer ${other.token}` }, 401, /Invalid access token/);
    const foreign = s.tokens.issue(crypto.randomUUID(), W);
    await bad({ authorization: `Bearer ${foreign.token}` }, 401, /another database/);
    const old = s.tokens.issue(s.store.id, W);
    const used = s.tokens.issue(s.store.id, W);
    assert.deepEqual(s.tokens.verify(used.token, s.store.id).subject, W); // now remembered
    now += 10_001;
    await bad({ authorization: `Bearer ${old.token}` }, 401, /expired/);
    await bad({ authorization: `Bearer ${used.token}` }, 401, /expired/);
    assert.throws(() => s.tokens.verify(used.token, crypto.randomUUID()), /another database/);
    // A read-only grant may read but not write.
    const ro = s.tokens.issue(s.store.id, { name: "reader", role: "read" });
    assert.equal(
      (await dataPath(s, "snapshot_read", read, { authorization: `Bearer ${ro.token}` }))
        .status,
      200,
    );
    const w = await dataPath(
      s,
      "atomic_write",
      encodeAtomicWrite({ checks: [], mutations: [setOf(["k"], 1)], enqueues: [] }),
      { authorization: `Bearer ${ro.token}` },
    );
    assert.equal(w.status, 403);
    assert.match(await w.text(), /may only read/);
    const junk = await dataPath(s, "atomic_write", new Uint8Array([0x0a, 0x7f, 0x01]));
    assert.equal(junk.status, 400);
    assert.match(await junk.text(), /Request protobuf is invalid/);
  } finally {
    await s.close();
  }
});

Deno.test("data path limits are Deno KV's, with its messages; nothing is applied", async () => {
  const s = serve();
  try {
    const write = async (m: Parameters<typeof encodeAtomicWrite>[0], re: RegExp) => {
      const r = await dataPath(s, "atomic_write", encodeAtomicWrite(m));
      assert.equal(r.status, 400);
      assert.match(await r.text(), re);
    };
    const key2049 = new Uint8Array(2049).fill(0x61);
    await write(
      { checks: [], mutations: [{ ...setOf(["x"], 1), key: key2049 }], enqueues: [] },
      /key size limit/,
    );
    await write(
      { checks: [], mutations: [setOf(["x"], new Uint8Array(65537))], enqueues: [] },
      /value size limit/,
    );
    await write({
      checks: Array.from({ length: 11 }, (_, i) => ({
        key: encodeKey(["c", i]),
        versionstamp: new Uint8Array(),
      })),
      mutations: [setOf(["x"], 1)],
      enqueues: [],
    }, /Too many checks/);
    await write({
      checks: [],
      mutations: Array.from({ length: 1001 }, (_, i) => setOf(["m", i], 1)),
      enqueues: [],
    }, /Too many mutations/);
    await write({
      checks: [],
      mutations: Array.from({ length: 13 }, (_, i) => setOf(["m", i], new Uint8Array(65_000))),
      enqueues: [],
    }, /total size of the atomic write is too large/);
    await write({
      checks: [{ key: encodeKey(["x"]), versionstamp: new Uint8Array(3) }],
      mutations: [],
      enqueues: [],
    }, /Invalid versionstamp/);
    await write({
      checks: [],
      mutations: [],
      enqueues: [{
        payload: new Uint8Array(),
        deadlineMs: 0,
        keysIfUndelivered: [],
        backoffSchedule: [],
      }],
    }, /Enqueue operations are not supported/);
    await write({
      checks: [],
      mutations: [{ ...setOf(["x"], 1), mutationType: MutationType.Unspecified }],
      enqueues: [],
    }, /Invalid mutation kind/);
    await write({
      checks: [],
      mutations: [{
        ...setOf(["x"], 1),
        mutationType: MutationType.Sum,
        value: { data: new Uint8Array([1]), encoding: ValueEncoding.V8 },
      }],
      enqueues: [],
    }, /Some of the parameters are not valid V8 values/);
    await write({
      checks: [],
      mutations: [{
        ...setOf(["x"], 1),
        mutationType: MutationType.Sum,
        value: encodeValue(1),
        sumMin: encodeValue(0n).data,
      }],
      enqueues: [],
    }, /Min\/max parameters have different types than the operand/);
    await write({
      checks: [],
      mutations: [{
        ...setOf(["x"], 1),
        mutationType: MutationType.Sum,
        value: { data: new Uint8Array([1]), encoding: ValueEncoding.Bytes },
      }],
      enqueues: [],
    }, /sum/);
    const readOf = (n: number, limit = 1) =>
      encodeSnapshotRead({
        ranges: Array.from({ length: n }, () => ({
          start: new Uint8Array([1]),
          end: new Uint8Array([2]),
          limit,
          reverse: false,
        })),
      });
    const read = async (b: Uint8Array, re: RegExp) => {
      const r = await dataPath(s, "snapshot_read", b);
      assert.equal(r.status, 400);
      assert.match(await r.text(), re);
    };
    await read(readOf(11), /Too many read ranges/);
    await read(readOf(2, 501), /total number of entries/);
    await read(readOf(1, 0), /limit of the snapshot read request is invalid/);
    // Nothing was written by any refused request.
    const all = await s.store.range({
      start: new Uint8Array(),
      end: new Uint8Array([0xff]),
      limit: 10,
      reverse: false,
      consistency: "strong",
    });
    assert.equal(all.entries.length, 0);
    // The right request goes through.
    const ok = await dataPath(
      s,
      "atomic_write",
      encodeAtomicWrite({ checks: [], mutations: [setOf(["x"], 1)], enqueues: [] }),
    );
    const out = decodeAtomicWriteOutput(new Uint8Array(await ok.arrayBuffer()));
    assert.equal(out.status, AtomicWriteStatus.Success);
    assert.equal(out.versionstamp.length, 10);
  } finally {
    await s.close();
  }
});

Deno.test("Deno's own client and gokv's openKv run the workload; each reads the other's data (in-memory model)", async () => {
  const s = serve();
  try {
    const stamps = await runWorkloadInDeno(s.url, TOKEN, "deno", 500);
    assert.ok(stamps.length > 30);
    const kv = await openKv(s.url, { token: TOKEN });
    try {
      await runKvWorkload(kv, { run: "gokv", KvU64, expiryBoundMs: 500 });
      await verifyValues(kv, "deno");
    } finally {
      kv.close();
    }
    await runInDeno(s.url, TOKEN, `await wl.verifyValues(kv, "gokv");`);
  } finally {
    await s.close();
  }
});

Deno.test("V8 sums: Deno's own client sums numbers and bigints; bounds clamp or abort with denokv's messages (in-memory model)", async () => {
  const s = serve();
  try {
    // What Deno 2.9's client sends for `mutate({ type: "sum", value: <number | bigint> })`: an
    // M_SUM with a VE_V8 value (its `sum()` takes Deno.KvU64 / bigint operands as LE64).
    const out = await runInDeno(
      s.url,
      TOKEN,
      `const r = [];
       const sum = (key, value) => kv.atomic().mutate({ type: "sum", key, value }).commit();
       r.push((await sum(["n"], 1)).ok, (await sum(["n"], 2.5)).ok);
       r.push((await sum(["g"], 5n)).ok, (await sum(["g"], 1n << 70n)).ok);
       try { await sum(["n"], 1n); r.push("no error"); } catch (e) { r.push(String(e)); }
       try {
         await kv.atomic().set(["side"], 1).mutate({ type: "sum", key: ["g"], value: 1 }).commit();
         r.push("no error");
       } catch (e) { r.push(String(e)); }
       r.push((await kv.get(["n"])).value, String((await kv.get(["g"])).value));
       r.push((await kv.get(["side"])).value);
       return r;`,
    ) as unknown[];
    // A refused write reaches Deno's client as its error for a 400, with the server's text.
    assert.match(String(out[4]), /status=400.*: Cannot sum Number with BigInt$/);
    assert.match(String(out[5]), /status=400.*: Cannot sum BigInt with Number$/);
    assert.deepEqual(out, [
      true,
      true,
      true,
      true,
      out[4],
      out[5],
      3.5,
      String(5n + (1n << 70n)),
      null,
    ]);
    // sum_min / sum_max / sum_clamp (V8 values of the operand's type) on the wire.
    const bounded = (value: unknown, o: { min?: unknown; max?: unknown; clamp?: boolean }) =>
      dataPath(
        s,
        "atomic_write",
        encodeAtomicWrite({
          checks: [],
          mutations: [{
            ...setOf(["n"], 0),
            mutationType: MutationType.Sum,
            value: encodeValue(value),
            sumMin: o.min === undefined ? new Uint8Array() : encodeValue(o.min).data,
            sumMax: o.max === undefined ? new Uint8Array() : encodeValue(o.max).data,
            sumClamp: o.clamp ?? false,
          }],
          enqueues: [],
        }),
      );
    const over = await bounded(10, { max: 5 });
    assert.equal(over.status, 400);
    assert.match(await over.text(), /The result of a Sum operation would exceed its range limit/);
    const clamped = await bounded(10, { max: 5, clamp: true });
    assert.equal(clamped.status, 200);
    assert.equal(
      decodeAtomicWriteOutput(new Uint8Array(await clamped.arrayBuffer())).status,
      AtomicWriteStatus.Success,
    );
    const low = await bounded(-100, { min: -1, max: 5, clamp: true });
    assert.equal(low.status, 200);
    await low.body?.cancel();
    const kv = await openKv(s.url, { token: TOKEN });
    try {
      assert.equal((await kv.get(["n"])).value, -1);
    } finally {
      kv.close();
    }
  } finally {
    await s.close();
  }
});

Deno.test("every data-path request is authorized for the token's subject: its operation and every key it touches", async () => {
  const seen: [string, KvConnectOp, number][] = [];
  const s = serve({
    authorize: (subject, op, scope) => {
      seen.push([subject.name, op, scope.length]);
      const p = subject.prefixes?.[0];
      for (const k of scope) {
        const key = k instanceof Uint8Array ? k : k.start;
        if (p && !p.every((b, i) => key[i] === b)) {
          throw Object.assign(new Error(`key outside the token's prefixes`), {
            name: "PermissionDeniedError",
          });
        }
      }
    },
  });
  try {
    const scoped = s.tokens.issue(s.store.id, {
      name: "scoped",
      role: "write",
      prefixes: [encodeKey(["mine"]).subarray(0, 6)],
    });
    const auth = { authorization: `Bearer ${scoped.token}` };
    const write = (key: unknown[]) =>
      dataPath(
        s,
        "atomic_write",
        encodeAtomicWrite({
          checks: [{ key: encodeKey(["mine", "c"]), versionstamp: new Uint8Array() }],
          mutations: [setOf(key, 1)],
          enqueues: [],
        }),
        auth,
      );
    assert.equal((await write(["mine", 1])).status, 200);
    const refused = await write(["theirs", 1]);
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /outside the token's prefixes/);
    const read = await dataPath(
      s,
      "snapshot_read",
      encodeSnapshotRead({
        ranges: [{ start: encodeKey(["x"]), end: encodeKey(["y"]), limit: 1, reverse: false }],
      }),
      auth,
    );
    assert.equal(read.status, 403);
    // The checks and the mutations of a write are all in its scope; a read names its ranges.
    assert.deepEqual(seen.filter(([, op, n]) => op === "atomic_write" && n > 0)[0], [
      "scoped",
      "atomic_write",
      2,
    ]);
    assert.ok(seen.some(([, op, n]) => op === "snapshot_read" && n === 1));
  } finally {
    await s.close();
  }
});

Deno.test("a watch stream whose reader stops reading: the node's queue for it stays bounded and the stream ends", async () => {
  const bound = 64 * 1024;
  const Bytes = StoredEncoding.BYTES;
  const limits = { ...defaultNodeLimits(), sendBufferBytes: bound, requestTimeoutMs: 500 };
  const store = new MemoryKvStore();
  // Counts the watch's reads of its key.
  let reads = 0;
  const getMany = store.getMany.bind(store);
  store.getMany = (keys, opts) => {
    reads++;
    return getMany(keys, opts);
  };
  const tokens = new DataPathTokens(TOKEN, 60_000);
  const streams = new WatchStreams(limits);
  const handler = createKvConnectHandler({
    store,
    access: staticAccessCheck(TOKEN),
    tokens,
    limits,
    watchPollMs: 5,
    watchStreams: streams,
  });
  const key = encodeKey(["k"]);
  const url = new URL("http://node/kv/v3/watch");
  const body = encodeWatch({ keys: [{ key }] });
  const res = await handler(
    new Request(url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${tokens.issue(store.id, W).token}`,
        "x-denokv-database-id": store.id,
        "x-denokv-version": "3",
      },
    }),
    url,
    body,
  )!;
  assert.equal(res.status, 200);
  try {
    // 8 MiB of changes of the watched key (60 KiB values), each seen by the watch's poll; its
    // reader reads nothing.
    const value = new Uint8Array(60 * 1024).fill(0x78);
    let maxQueued = 0;
    for (let i = 0; i < 140 && streams.slowReaders === 0; i++) {
      value[0] = i;
      const set = { type: "set" as const, key, value: value.slice(), encoding: Bytes };
      await store.atomic({ checks: [], mutations: [set] });
      // Until the watch read the key again (its frame queued), or it stopped at its bound.
      const reads0 = reads;
      const seen = Date.now() + 1_000;
      while (Date.now() < seen && reads === reads0 && streams.bufferedBytes < bound) {
        await new Promise((r) => setTimeout(r, 2));
      }
      maxQueued = Math.max(maxQueued, streams.bufferedBytes);
    }
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && streams.slowReaders === 0) {
      await new Promise((r) => setTimeout(r, 10));
    }
    // The reader gets the frames queued before the end, then the end.
    const reader = res.body!.getReader();
    let received = 0;
    let ended = false;
    const readDeadline = Date.now() + 5_000;
    while (Date.now() < readDeadline && received < 64 * 1024 * 1024) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        reader.read(),
        new Promise<undefined>((res) => timer = setTimeout(() => res(undefined), 1_000)),
      ]);
      clearTimeout(timer);
      if (r === undefined) break;
      if (r.done) {
        ended = true;
        break;
      }
      received += r.value.length;
    }
    await reader.cancel().catch(() => {});
    assert.ok(
      received <= bound + 64 * 1024,
      `${received} bytes were queued for a reader that read nothing (bound ${bound}); ` +
        `ended: ${ended}`,
    );
    assert.ok(received > 0 && ended);
    assert.equal(streams.slowReaders, 1);
    assert.ok(maxQueued <= bound + 64 * 1024, `queued up to ${maxQueued}`);
    assert.equal(streams.open, 0);
    assert.equal(streams.bufferedBytes, 0);
  } finally {
    await res.body?.cancel().catch(() => {});
  }
});
