import assert from "node:assert/strict";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import { AddressBook } from "./members.ts";
import { KvService, roleName } from "./service.ts";
import { createServerMetrics } from "./server_metrics.ts";
import { createHttpHandler, FORWARDED_HEADER, readBody } from "./http.ts";
import { FakeRaft } from "./testing.ts";
import { LimitError } from "../config/limits.ts";
import {
  defaultNodeLimits,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  type NodeLimits,
} from "../config/limits.ts";

function setup(
  opts: {
    lead?: number;
    fetch?: typeof fetch;
    limits?: Partial<NodeLimits>;
    problems?: () => string[];
  } = {},
) {
  const sm = new MemoryStateMachine();
  const raft = new FakeRaft(1, sm, opts.lead ?? 1, [1, 2, 3]);
  const book = new AddressBook([
    { id: 1, peer: "127.0.0.1:7001", client: "127.0.0.1:8001", http: "127.0.0.1:9001" },
    { id: 2, peer: "127.0.0.1:7002", client: "127.0.0.1:8002", http: "127.0.0.1:9002" },
    { id: 3, peer: "127.0.0.1:7003", client: "127.0.0.1:8003", http: "127.0.0.1:9003" },
  ]);
  const calls = { raft: 0, storage: 0 };
  const metrics = createServerMetrics({
    raft: () => {
      calls.raft++;
      return { term: 1, commit: raft.index, applied: raft.index, isLeader: true, logSize: 0 };
    },
    storage: () => ({
      ...(calls.storage++, sm.stats()),
      levels: [{ level: 0, bytes: 10, files: 1 }],
      lsm: { compactions: 3, levels: [{ level: 0, bytes: 7, files: 2 }] },
    }),
  });
  const limits = { ...defaultNodeLimits(), ...opts.limits };
  const service = new KvService({ id: 1, raft, sm, book, metrics, limits });
  const handler = createHttpHandler(service, {
    metrics,
    httpAddressOf: (id) => book.get(id)?.http,
    fetch: opts.fetch,
    problems: opts.problems,
  });
  const call = async (method: string, path: string, body?: BodyInit, headers?: HeadersInit) => {
    // As a gokv client: the client header (a POST needs it), JSON bodies declared as JSON.
    const h = new Headers({ "x-gokv-client": "test" });
    if (typeof body === "string" && body.startsWith("{") && !path.startsWith("/v1/kv")) {
      h.set("content-type", "application/json");
    }
    for (const [k, v] of new Headers(headers)) h.set(k, v);
    const res = await handler(new Request(`http://node1${path}`, { method, body, headers: h }));
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text);
    } catch { /* not JSON */ }
    return { status: res.status, json, text, headers: res.headers };
  };
  return { sm, raft, service, call, calls };
}

Deno.test("HTTP put, get and delete of a key; a missing key is 404 with a JSON body", async () => {
  const { call } = setup();
  assert.equal((await call("PUT", "/v1/kv/greeting", "hello world")).status, 200);
  let r = await call("GET", "/v1/kv/greeting");
  assert.equal(r.status, 200);
  assert.equal(r.text, "hello world");
  assert.equal(r.headers.get("content-type"), "application/octet-stream");
  r = await call("GET", "/v1/kv/greeting?consistency=serializable", undefined, {
    accept: "application/json",
  });
  assert.deepEqual(r.json, {
    key: "greeting",
    value: "hello world",
    versionstamp: "00000000000000010000",
    encoding: "bytes",
  });
  assert.equal((await call("DELETE", "/v1/kv/greeting")).status, 200);
  r = await call("GET", "/v1/kv/greeting");
  assert.equal(r.status, 404);
  assert.equal(r.json.error, "not_found");
  assert.equal(r.json.key, "greeting");
});

Deno.test("HTTP keys are percent-decoded and JSON bodies with a value are accepted", async () => {
  const { call, sm } = setup();
  await call("PUT", "/v1/kv/a%2Fb%20c", JSON.stringify({ value: "v" }), {
    "content-type": "application/json",
  });
  assert.deepEqual(await sm.get(new TextEncoder().encode("a/b c")), new TextEncoder().encode("v"));
  const bin = await call("PUT", "/v1/kv/bin", new Uint8Array([0xff, 0xfe]));
  assert.equal(bin.status, 200);
  assert.equal((await call("GET", "/v1/kv/bin?format=json")).json.valueBase64, "//4=");
});

Deno.test("HTTP values are raw bytes in and out; JSON never drops fields", async () => {
  const { call, sm } = setup();
  const bytes = new Uint8Array([0, 1, 0xfe, 0xff, 0x7b]);
  // A JSON-looking body with another content type is the value as sent.
  assert.equal((await call("PUT", "/v1/kv/raw", '{"value":"x"}')).status, 200);
  assert.equal((await call("GET", "/v1/kv/raw")).text, '{"value":"x"}');
  await call("PUT", "/v1/kv/bytes", bytes, { "content-type": "application/octet-stream" });
  assert.equal(
    (await call("GET", "/v1/kv/bytes")).headers.get("content-type"),
    "application/octet-stream",
  );
  assert.deepEqual(await sm.get(new TextEncoder().encode("bytes")), bytes);
  const json = { "content-type": "application/json" };
  const extra = await call("PUT", "/v1/kv/j", JSON.stringify({ value: "v", ttl: 5 }), json);
  assert.equal(extra.status, 400);
  assert.match(extra.json.message as string, /unknown field\(s\).*ttl/);
  assert.equal(await sm.get(new TextEncoder().encode("j")), undefined, "nothing written");
  assert.equal(
    (await call("PUT", "/v1/kv/j", JSON.stringify({ valueBase64: "AP8" }), json)).status,
    200,
  );
  assert.deepEqual(await sm.get(new TextEncoder().encode("j")), new Uint8Array([0, 0xff]));
  assert.equal((await call("PUT", "/v1/kv/j", JSON.stringify({ value: 1 }), json)).status, 400);
});

Deno.test("HTTP binary keys: %FF in the path is the byte 0xFF, ?key_b64= addresses any key", async () => {
  const { call, sm } = setup();
  assert.equal((await call("PUT", "/v1/kv/%FF%00k", "v1")).status, 200);
  assert.deepEqual(await sm.get(new Uint8Array([0xff, 0, 0x6b])), new TextEncoder().encode("v1"));
  // The same key in base64url: read, overwrite, delete.
  const b64 = "_wBr";
  assert.equal((await call("GET", `/v1/kv?key_b64=${b64}`)).text, "v1");
  assert.equal((await call("PUT", `/v1/kv?key_b64=${b64}`, "v2")).status, 200);
  assert.equal((await call("GET", "/v1/kv/%ff%00k")).text, "v2");
  const listed = await call("GET", "/v1/kv?prefix_b64=_w");
  assert.deepEqual(listed.json.kvs, [{
    keyBase64: "/wBr",
    value: "v2",
    versionstamp: "00000000000000020000",
    encoding: "bytes",
  }]);
  assert.equal((await call("DELETE", `/v1/kv?key_b64=${b64}`)).status, 200);
  const gone = await call("GET", `/v1/kv?key_b64=${b64}`);
  assert.equal(gone.status, 404);
  assert.equal(gone.json.keyBase64, "/wBr");
  assert.equal((await call("GET", "/v1/kv?key_b64=%%%")).status, 400);
  assert.equal((await call("GET", "/v1/kv/%zz")).status, 400);
});

Deno.test("HTTP range scan honours prefix, start, end and limit", async () => {
  const { call } = setup();
  for (const k of ["a1", "a2", "a3", "b1"]) await call("PUT", `/v1/kv/${k}`, k.toUpperCase());
  let r = await call("GET", "/v1/kv?prefix=a");
  assert.deepEqual((r.json.kvs as { key: string }[]).map((x) => x.key), ["a1", "a2", "a3"]);
  r = await call("GET", "/v1/kv?start=a2&end=b1");
  assert.deepEqual((r.json.kvs as { key: string }[]).map((x) => x.key), ["a2", "a3"]);
  r = await call("GET", "/v1/kv?limit=2");
  assert.equal(r.json.count, 2);
  assert.equal((await call("GET", "/v1/kv?limit=x")).status, 400);
});

Deno.test("HTTP scans are paged: a byte budget per page and a `next` cursor", async () => {
  const { call } = setup({ limits: { scanPagePairs: 3, scanPageBytes: 2048 } });
  for (let i = 0; i < 10; i++) {
    await call("PUT", `/v1/kv/k${i}`, new Uint8Array(i === 5 ? 5000 : 100));
  }
  const seen: string[] = [];
  const sizes: number[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 20; page++) {
    const r = await call("GET", `/v1/kv?prefix=k${cursor ? `&cursor=${cursor}` : ""}`);
    assert.equal(r.status, 200);
    const kvs = r.json.kvs as { key: string }[];
    assert.ok(kvs.length <= 3, "the default page size holds");
    sizes.push(kvs.length);
    seen.push(...kvs.map((x) => x.key));
    cursor = r.json.next as string | undefined;
    if (!cursor) break;
  }
  assert.deepEqual(seen, Array.from({ length: 10 }, (_, i) => `k${i}`));
  // k5 alone is over the byte budget: it comes in a page of its own.
  assert.ok(sizes.includes(1), `pages ${sizes}`);
  assert.equal((await call("GET", "/v1/kv?cursor=!!")).status, 400);
});

Deno.test("HTTP bad input is 400, unknown routes 404, wrong methods 405", async () => {
  const { call } = setup();
  assert.equal((await call("GET", "/v1/kv/k?consistency=eventual")).status, 400);
  assert.equal((await call("GET", "/v1/kv/%E0%A4%A")).status, 400);
  assert.equal((await call("POST", "/v1/members", "{not json")).status, 400);
  assert.equal(
    (await call("POST", "/v1/members", JSON.stringify({ id: 4, peer: "x" }))).status,
    400,
  );
  assert.equal((await call("GET", "/v1/nothing")).status, 404);
  assert.equal((await call("PATCH", "/v1/kv/k")).status, 405);
  assert.equal((await call("DELETE", "/v1/members/99")).status, 404);
  const huge = await call("PUT", "/v1/kv/k", "x", { "content-length": String(64 * 1024 * 1024) });
  assert.equal(huge.status, 413);
  const body = await call("PUT", "/v1/kv/k", new Uint8Array(9 * 1024 * 1024));
  assert.equal(body.status, 413);
  assert.deepEqual([body.json.error, body.json.limit], ["limit_exceeded", "http_body_bytes"]);
  const value = await call("PUT", "/v1/kv/k", new Uint8Array(MAX_VALUE_BYTES + 1));
  assert.equal(value.status, 413);
  assert.deepEqual([value.json.limit, value.json.max], ["value_bytes", MAX_VALUE_BYTES]);
  const key = await call("DELETE", `/v1/kv/${"k".repeat(MAX_KEY_BYTES + 1)}`);
  assert.equal(key.status, 413);
  assert.deepEqual([key.json.limit, key.json.max], ["key_bytes", MAX_KEY_BYTES]);
});

Deno.test("HTTP members, add, remove and leader transfer", async () => {
  const { call, raft } = setup();
  let r = await call("GET", "/v1/members");
  assert.equal((r.json.members as unknown[]).length, 3);
  assert.equal(r.json.leader, 1);
  r = await call(
    "POST",
    "/v1/members",
    JSON.stringify({
      id: 4,
      peer: "127.0.0.1:7004",
      client: "127.0.0.1:8004",
      http: "127.0.0.1:9004",
    }),
  );
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(raft.voters, [1, 2, 3, 4]);
  assert.equal((await call("DELETE", "/v1/members/3")).status, 200);
  assert.deepEqual(raft.voters, [1, 2, 4]);
  assert.equal((await call("POST", "/v1/leader/transfer", JSON.stringify({ id: 2 }))).status, 200);
  assert.deepEqual(raft.transfers, [2]);
});

Deno.test("HTTP status, healthz and Prometheus metrics", async () => {
  const { call } = setup();
  await call("PUT", "/v1/kv/k", "v");
  await call("GET", "/v1/kv/k");
  const s = await call("GET", "/v1/status");
  for (
    const f of [
      "id",
      "role",
      "term",
      "leader",
      "commitIndex",
      "appliedIndex",
      "snapshotIndex",
      "logSize",
      "storage",
    ]
  ) {
    assert.ok(f in s.json, `status has ${f}`);
  }
  assert.equal(s.json.role, "leader");
  assert.equal((await call("GET", "/healthz")).status, 200);
  const m = await call("GET", "/metrics");
  assert.match(m.headers.get("content-type")!, /text\/plain/);
  assert.match(m.text, /^# TYPE gokv_proposals_total counter$/m);
  assert.match(m.text, /^gokv_proposals_total 1$/m);
  assert.match(m.text, /^gokv_read_index_seconds_count 1$/m);
  assert.match(m.text, /^gokv_fsync_seconds_bucket\{le="\+Inf"\} 0$/m);
  assert.doesNotMatch(m.text, /gokv_storage_stat/);
  assert.match(m.text, /^gokv_raft_commit_index 1$/m);
  assert.match(m.text, /^gokv_lsm_level_bytes\{level="0"\} 7$/m);
  assert.match(m.text, /^gokv_lsm_level_files\{level="0"\} 2$/m);
  assert.match(m.text, /^gokv_lsm_compactions_total 3$/m);
  assert.match(
    m.text,
    /^gokv_http_requests_total\{method="PUT",route="\/v1\/kv\/\{key\}",status="200"\} 1$/m,
  );
  assert.match(
    m.text,
    /^gokv_http_request_seconds_count\{method="GET",route="\/v1\/status",status="200"\} 1$/m,
  );
});

Deno.test("one /metrics scrape reads the raft status and the storage statistics once", async () => {
  const { call, calls } = setup();
  await call("GET", "/metrics");
  const before = { ...calls };
  const m = await call("GET", "/metrics");
  assert.equal(m.status, 200);
  assert.equal(calls.storage - before.storage, 1, "storage stats computed once per scrape");
  assert.equal(calls.raft - before.raft, 1, "raft status read once per scrape");
});

Deno.test("a follower forwards writes to the leader's HTTP address, once", async () => {
  const seen: string[] = [];
  const fakeFetch = ((input: string | URL | Request, init?: RequestInit) => {
    seen.push(`${init?.method} ${input} fwd=${new Headers(init?.headers).get(FORWARDED_HEADER)}`);
    return Promise.resolve(
      new Response(JSON.stringify({ ok: true, from: "leader" }), { status: 200 }),
    );
  }) as typeof fetch;
  const { call } = setup({ lead: 2, fetch: fakeFetch });
  const r = await call("PUT", "/v1/kv/k?x=1", "v");
  assert.equal(r.status, 200);
  assert.equal(r.json.from, "leader");
  assert.deepEqual(seen, ["PUT http://127.0.0.1:9002/v1/kv/k?x=1 fwd=1"]);
  // An already-forwarded request is not forwarded again.
  const again = await call("PUT", "/v1/kv/k", "v", { [FORWARDED_HEADER]: "3" });
  assert.equal(again.status, 503);
  assert.equal(again.json.error, "not_leader");
  assert.equal(again.json.leader, 2);
  assert.equal(again.json.leaderHttp, "127.0.0.1:9002");
});

Deno.test("without a known leader a write is 503 not_leader", async () => {
  const { call } = setup({ lead: 0 });
  const r = await call("PUT", "/v1/kv/k", "v");
  assert.equal(r.status, 503);
  assert.equal(r.json.error, "not_leader");
  assert.equal((await call("GET", "/v1/kv/k")).status, 503);
});

Deno.test("a failed forward answers 503 naming the leader's HTTP address", async () => {
  const failing = (() => Promise.reject(new TypeError("connection refused"))) as typeof fetch;
  const { call } = setup({ lead: 3, fetch: failing });
  const r = await call("DELETE", "/v1/kv/k");
  assert.equal(r.status, 503);
  assert.equal(r.json.error, "unavailable");
  assert.equal(r.json.leader, 3);
  assert.equal(r.json.leaderHttp, "127.0.0.1:9003");
  assert.match(String(r.json.message), /connection refused/);
});

Deno.test("status roles are leader, follower, candidate or learner", () => {
  assert.equal(roleName("leader", false), "leader");
  assert.equal(roleName("follower", false), "follower");
  assert.equal(roleName("follower", true), "learner");
  assert.equal(roleName("learner", true), "learner");
  assert.equal(roleName("candidate", false), "candidate");
  assert.equal(roleName("pre-candidate", false), "candidate");
});

Deno.test("HTTP writes with a client session are applied once when retried", async () => {
  const { call, sm } = setup();
  const reg = await call("POST", "/v1/sessions");
  assert.equal(reg.status, 200);
  const id = String(reg.json.session);
  const session = { "x-gokv-client-id": id, "x-gokv-seq": "1" };
  assert.equal((await call("PUT", "/v1/kv/s", "first", session)).status, 200);
  assert.equal((await call("PUT", "/v1/kv/s", "other")).status, 200);
  // A retry of the first write (same session and seq) must not overwrite the later one.
  assert.equal((await call("PUT", "/v1/kv/s", "first", session)).status, 200);
  assert.equal((await call("GET", "/v1/kv/s")).text, "other");
  assert.equal((await sm.session(BigInt(id)))?.lastSeq, 1);
  // The seq reused for a different write is refused, never answered OK without writing.
  const reused = await call("PUT", "/v1/kv/s", "different", session);
  assert.equal(reused.status, 400);
  assert.match(String(reused.json.message), /already used by a different command/);
  assert.equal((await call("GET", "/v1/kv/s")).text, "other");
  // An id that was never registered (a script's made-up client id) is refused with 410.
  const unknown = await call("PUT", "/v1/kv/s", "x", {
    "x-gokv-client-id": "12345678901234567890",
    "x-gokv-seq": "1",
  });
  assert.equal(unknown.status, 410);
  assert.equal(unknown.json.error, "session_expired");
  assert.equal((await call("GET", "/v1/kv/s")).text, "other");
  assert.equal((await call("PUT", "/v1/kv/s", "x", { "x-gokv-seq": "2" })).status, 400);
  assert.equal(
    (await call("PUT", "/v1/kv/s", "x", { "x-gokv-client-id": "abc", "x-gokv-seq": "2" })).status,
    400,
  );
});

Deno.test("healthz is 503 naming the problem while a listener cannot accept", async () => {
  let problems: string[] = [];
  const { call } = setup({ problems: () => problems });
  assert.equal((await call("GET", "/healthz")).status, 200);
  problems = ["client listener: accept failing: Too many open files (os error 24)"];
  const r = await call("GET", "/healthz");
  assert.equal(r.status, 503);
  assert.equal(r.json.status, "unhealthy");
  assert.deepEqual(r.json.problems, problems);
});

Deno.test("HTTP: GET answers versionstamps (header or JSON); writes answer theirs", async () => {
  const { call } = setup();
  const put = await call("PUT", "/v1/kv/a", "1");
  assert.equal(put.status, 200);
  assert.match(String(put.json.versionstamp), /^[0-9a-f]{20}$/);
  const raw = await call("GET", "/v1/kv/a");
  assert.equal(raw.text, "1");
  assert.equal(raw.headers.get("x-gokv-versionstamp"), put.json.versionstamp);
  assert.equal(raw.headers.get("x-gokv-encoding"), "bytes");
  const j = await call("GET", "/v1/kv/a?format=json");
  assert.deepEqual(j.json, {
    key: "a",
    value: "1",
    versionstamp: put.json.versionstamp,
    encoding: "bytes",
  });
  const missing = await call("GET", "/v1/kv/nope?format=json");
  assert.equal(missing.status, 404);
  assert.equal(missing.json.versionstamp, null);
  const scan = await call("GET", "/v1/kv?prefix=a");
  assert.equal(
    (scan.json.kvs as { versionstamp: string }[])[0].versionstamp,
    put.json.versionstamp,
  );
  await call("PUT", "/v1/kv/b", "2");
  const rev = await call("GET", "/v1/kv?reverse=true");
  assert.deepEqual((rev.json.kvs as { key: string }[]).map((k) => k.key), ["b", "a"]);
});

Deno.test("HTTP: POST /v1/txn commits checks and mutations or reports the failed checks", async () => {
  const { call, raft } = setup();
  const txn = (o: unknown, headers?: HeadersInit) =>
    call("POST", "/v1/txn", JSON.stringify(o), { "content-type": "application/json", ...headers });
  const first = await txn({
    checks: [{ key: "lock", versionstamp: null }],
    mutations: [
      { type: "set", key: "lock", value: "me", expireIn: 60_000 },
      { type: "sum", key: "n", value: "5" },
    ],
  });
  assert.equal(first.status, 200, first.text);
  assert.equal(first.json.ok, true);
  const again = await txn({
    checks: [{ key: "lock", versionstamp: null }],
    mutations: [{ type: "set", key: "lock", value: "you" }],
  });
  assert.deepEqual(again.json, { ok: false, failedChecks: [0] });
  const lock = await call("GET", "/v1/kv/lock?format=json");
  assert.equal(lock.json.versionstamp, first.json.versionstamp);
  assert.equal(typeof lock.json.expireAt, "number");
  const n = await call("GET", "/v1/kv/n?format=json");
  assert.deepEqual([n.json.value, n.json.encoding], ["5", "u64"]);
  // A sum on text: 400 mutation_type, nothing applied.
  const bad = await txn({
    mutations: [{ type: "delete", key: "n" }, { type: "sum", key: "lock", value: 1 }],
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error, "mutation_type");
  assert.equal((await call("GET", "/v1/kv/n")).status, 200);
  // Malformed transactions are refused before anything is proposed.
  const before = raft.proposals;
  for (
    const o of [
      { mutations: [{ type: "set", key: "k" }] },
      { mutations: [{ type: "nope", key: "k" }] },
      { checks: [{ key: "k", versionstamp: "xyz" }] },
      { mutations: [{ type: "sum", key: "k", value: "-1" }] },
      { mutations: [{ type: "set", key: "k", value: "v", extra: 1 }] },
      { other: [] },
    ]
  ) {
    const r = await txn(o);
    assert.equal(r.status, 400, JSON.stringify(o));
  }
  assert.equal((await call("POST", "/v1/txn", "{not json")).status, 400);
  assert.equal(raft.proposals, before);
  // ?ttl on PUT sets an expiry.
  const t = await call("PUT", "/v1/kv/t?ttl=30s", "v");
  assert.equal(t.status, 200);
  const te = await call("GET", "/v1/kv/t?format=json");
  assert.ok(Number(te.json.expireAt) > Date.now() + 25_000);
  assert.equal((await call("PUT", "/v1/kv/t?ttl=soon", "v")).status, 400);
});

Deno.test("readBody: a small declared body is read whole, refused over the limit, given up when it stalls", async () => {
  const post = (body: BodyInit, length: number) =>
    new Request("http://x/", {
      method: "POST",
      body,
      headers: { "content-length": String(length) },
    });
  const got = await readBody(post(new Uint8Array([1, 2, 3]), 3), 100, 1_000);
  assert.deepEqual(got, new Uint8Array([1, 2, 3]));
  await assert.rejects(() => readBody(post(new Uint8Array(200), 200), 100, 1_000), LimitError);
  // 10 of 100 declared bytes, then nothing: refused after the stall time, not waited for.
  const stalled = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array(10));
    },
  });
  await assert.rejects(() => readBody(post(stalled, 100), 1_000, 200), /stalled/);
});
