/**
 * KV Connect against a real 3-node cluster (real node processes, tests/harness.ts): the Deno
 * runtime's own client (`Deno.openKv(url)` in child `deno run --unstable-kv` processes with
 * `DENO_KV_ACCESS_TOKEN`) and gokv's `openKv`, the README's example, and increments through a
 * leader kill.
 */
import assert from "node:assert/strict";
import { TestCluster, waitFor } from "./harness.ts";
import { runInDeno, runKvWorkload, runWorkloadInDeno, verifyValues } from "./kv_workload.ts";
import { KvU64, openKv } from "../client/kv.ts";
import { hashToken } from "../server/auth.ts";
import { Client } from "../client/client.ts";
import { LimitError } from "../client/errors.ts";
import {
  AtomicWriteStatus,
  decodeAtomicWriteOutput,
  decodeSnapshotReadOutput,
  encodeAtomicWrite,
  encodeSnapshotRead,
  MutationType,
  ValueEncoding,
} from "../client/kv_connect_codec.ts";
import { encodeKey } from "../client/kv_key.ts";
import { encodeValue } from "../client/kv_value.ts";

const TOKEN = "kv-connect-test-token-0123";
const YAML = "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n" +
  `kv_connect:\n  access_token: ${TOKEN}\n`;
/** How long an expired key may stay readable: the leader sweeps every 250 ms; a key is hidden
 * once the state machine's clock passes its time. */
const EXPIRY_BOUND_MS = 3_000;

const kvUrl = (c: TestCluster, id: number) => `http://${c.nodes.get(id)!.http}/kv`;

async function databaseIdOf(c: TestCluster, id: number): Promise<string> {
  const res = await fetch(kvUrl(c, id), {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text).databaseId;
}

/** A version 3 metadata exchange with node `via`: the database id and a data-path POST to any
 * node with its token. */
async function dataPath(c: TestCluster, via: number) {
  const id = await waitFor(async () => await databaseIdOf(c, via), 10_000, "database id");
  const ex = await fetch(kvUrl(c, via), {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ supportedVersions: [3] }),
  }).then((r) => r.json());
  const post = (node: number, path: string, body: Uint8Array) =>
    fetch(`http://${c.nodes.get(node)!.http}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${ex.token}`,
        "x-denokv-database-id": id,
        "x-denokv-version": "3",
      },
      body: body as Uint8Array<ArrayBuffer>,
    });
  return { id, post };
}

Deno.test("Deno's own client and gokv's openKv run the workload on a 3-node cluster and read each other's data", async () => {
  const c = await TestCluster.create({ extraYaml: YAML });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const follower = [...c.nodes.keys()].find((id) => id !== leader)!;
    // One database id on every node: the cluster's.
    const id = await waitFor(async () => await databaseIdOf(c, leader), 10_000, "database id");
    for (const n of c.nodes.keys()) assert.equal(await databaseIdOf(c, n), id);
    // Deno's client through a follower (the strong endpoint reaches the leader from any node).
    const stamps = await runWorkloadInDeno(kvUrl(c, follower), TOKEN, "deno", EXPIRY_BOUND_MS);
    assert.ok(stamps.length > 30);
    const kv = await openKv(kvUrl(c, leader), { token: TOKEN });
    try {
      const mine = await runKvWorkload(kv, { run: "gokv", KvU64, expiryBoundMs: EXPIRY_BOUND_MS });
      assert.ok(mine[0] > stamps[stamps.length - 1], "versionstamps keep increasing");
      await verifyValues(kv, "deno");
    } finally {
      kv.close();
    }
    await runInDeno(kvUrl(c, follower), TOKEN, `await wl.verifyValues(kv, "gokv");`);
  } finally {
    await c.stop();
  }
});

Deno.test("on the cluster: read_is_strongly_consistent is true on the strong endpoint only; server-side limits hold for raw requests; the database id survives a full restart", async () => {
  const c = await TestCluster.create({ extraYaml: YAML });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    await c.waitServing(); // every node's HTTP port, not only the leader's, is asked below
    const { id, post } = await dataPath(c, leader);
    const read = encodeSnapshotRead({
      ranges: [{ start: new Uint8Array([1]), end: new Uint8Array([2]), limit: 1, reverse: false }],
    });
    for (const node of c.nodes.keys()) {
      // A token issued by the leader is valid on every node (one key derived from one secret).
      for (const [path, strong] of [["/kv/v3", true], ["/kv/eventual/v3", false]] as const) {
        const r = await post(node, `${path}/snapshot_read`, read);
        assert.equal(r.status, 200);
        const out = decodeSnapshotReadOutput(new Uint8Array(await r.arrayBuffer()));
        assert.equal(out.readIsStronglyConsistent, strong, `node ${node} ${path}`);
      }
    }
    const mut = (key: Uint8Array, data: Uint8Array) => ({
      key,
      value: { data, encoding: ValueEncoding.Bytes },
      mutationType: MutationType.Set,
      expireAtMs: 0,
      sumMin: new Uint8Array(),
      sumMax: new Uint8Array(),
      sumClamp: false,
    });
    const refused = async (
      m: Parameters<typeof encodeAtomicWrite>[0]["mutations"][number],
      re: RegExp,
    ) => {
      const r = await post(
        leader,
        "/kv/v3/atomic_write",
        encodeAtomicWrite({ checks: [], mutations: [m], enqueues: [] }),
      );
      assert.equal(r.status, 400);
      assert.match(await r.text(), re);
    };
    await refused(mut(new Uint8Array(2049).fill(2), new Uint8Array(1)), /key size limit/);
    await refused(mut(new Uint8Array([2, 0x61, 0]), new Uint8Array(65537)), /value size limit/);
    const eleven = await post(
      leader,
      "/kv/v3/atomic_write",
      encodeAtomicWrite({
        checks: Array.from({ length: 11 }, (_, i) => ({
          key: new Uint8Array([2, 0x63, i, 0]),
          versionstamp: new Uint8Array(),
        })),
        mutations: [mut(new Uint8Array([2, 0x61, 0]), new Uint8Array(1))],
        enqueues: [],
      }),
    );
    assert.equal(eleven.status, 400);
    assert.equal(await eleven.text(), "Too many checks included in atomic write.");
    // V8 sums through Raft: Deno's client's `mutate({ type: "sum" })` of numbers and bigints
    // (an M_SUM of VE_V8 values), a type mismatch refused with denokv's message, and bounds.
    const sums = await runInDeno(
      kvUrl(c, leader),
      TOKEN,
      `const sum = (key, value) => kv.atomic().mutate({ type: "sum", key, value }).commit();
       const r = [(await sum(["v8", "n"], 1.5)).ok, (await sum(["v8", "n"], 2)).ok];
       r.push((await sum(["v8", "g"], 1n << 65n)).ok, (await sum(["v8", "g"], 1n)).ok);
       try { await sum(["v8", "g"], 1); r.push("no error"); } catch (e) { r.push(String(e)); }
       return r;`,
    ) as unknown[];
    assert.deepEqual(sums.slice(0, 4), [true, true, true, true]);
    assert.match(String(sums[4]), /status=400.*Cannot sum BigInt with Number/);
    // gokv's openKv sends the same V8 sums: both clients add to the same keys and read the
    // same results; a type mismatch is refused with the same message.
    const gk = await openKv(kvUrl(c, leader), { token: TOKEN });
    try {
      const add = (key: string, value: number | bigint) =>
        gk.atomic().mutate({ type: "sum", key: ["v8x", key], value }).commit();
      assert.equal((await add("n", 1.5)).ok, true);
      assert.equal((await add("g", 10n)).ok, true);
      const deno = await runInDeno(
        kvUrl(c, leader),
        TOKEN,
        `const sum = (k, value) => kv.atomic().mutate({ type: "sum", key: ["v8x", k], value }).commit();
         const r = [(await sum("n", 2)).ok, (await sum("g", 5n)).ok];
         r.push((await kv.get(["v8x", "n"])).value, String((await kv.get(["v8x", "g"])).value));
         try { await sum("n", 1n); r.push("no error"); } catch (e) { r.push(String(e)); }
         return r;`,
      ) as unknown[];
      assert.deepEqual(deno.slice(0, 4), [true, true, 3.5, "15"]);
      assert.equal((await add("n", 0.5)).ok, true);
      assert.equal((await add("g", 1n)).ok, true);
      assert.equal((await gk.get(["v8x", "n"])).value, 4);
      assert.equal((await gk.get(["v8x", "g"])).value, 16n);
      const mismatch = await add("n", 1n).then(() => "no error", (e) => String(e));
      assert.match(mismatch, /status=400.*Cannot sum Number with BigInt/);
      assert.match(String(deno[4]), /status=400.*Cannot sum Number with BigInt/);
      assert.equal((await gk.get(["v8x", "n"])).value, 4, "a refused sum changes nothing");
    } finally {
      gk.close();
    }
    const v8sum = (value: unknown, o: { max: unknown; clamp: boolean }) => ({
      ...mut(encodeKey(["v8", "n"]), new Uint8Array()),
      value: encodeValue(value),
      mutationType: MutationType.Sum,
      sumMax: encodeValue(o.max).data,
      sumClamp: o.clamp,
    });
    await refused(v8sum(10, { max: 5, clamp: false }), /would exceed its range limit/);
    const clamped = await post(
      leader,
      "/kv/v3/atomic_write",
      encodeAtomicWrite({
        checks: [],
        mutations: [v8sum(10, { max: 5, clamp: true })],
        enqueues: [],
      }),
    );
    assert.equal(clamped.status, 200);
    await clamped.body?.cancel();
    // Restart every node: the same database id (it is in the replicated state).
    for (const n of [...c.nodes.keys()]) await c.kill(n);
    c.startAll();
    const again = await c.waitLeader();
    assert.equal(await waitFor(() => databaseIdOf(c, again), 20_000, "database id"), id);
    // The sums survived the restart (read by Deno's client).
    const after = await runInDeno(
      kvUrl(c, again),
      TOKEN,
      `return [(await kv.get(["v8", "n"])).value, String((await kv.get(["v8", "g"])).value)];`,
    );
    assert.deepEqual(after, [5, String((1n << 65n) + 1n)]);
  } finally {
    await c.stop();
  }
});

Deno.test("raised atomic_* limits let a larger atomic operation through end to end (KV Connect and the binary protocol): no second, hidden check", async () => {
  const c = await TestCluster.create({
    extraYaml: YAML +
      "limits:\n  atomic_checks: 20\n  atomic_key_bytes: 4096\n  atomic_value_bytes: 200000\n" +
      "  atomic_total_bytes: 2097152\n",
  });
  let client: Client | undefined;
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const { post } = await dataPath(c, leader);
    // Over every default: 15 checks, a 3,000-byte key, values of 100,000 bytes, ~1 MB in all.
    const bigKey = new Uint8Array(3000).fill(0x62);
    bigKey[0] = 2;
    const value = (i: number) => new Uint8Array(100_000).fill(i);
    const write = encodeAtomicWrite({
      checks: Array.from({ length: 15 }, (_, i) => ({
        key: new Uint8Array([2, 0x63, i, 0]),
        versionstamp: new Uint8Array(),
      })),
      mutations: Array.from({ length: 10 }, (_, i) => ({
        key: i === 0 ? bigKey : new Uint8Array([2, 0x6d, i, 0]),
        value: { data: value(i), encoding: ValueEncoding.Bytes },
        mutationType: MutationType.Set,
        expireAtMs: 0,
        sumMin: new Uint8Array(),
        sumMax: new Uint8Array(),
        sumClamp: false,
      })),
      enqueues: [],
    });
    const res = await post(leader, "/kv/v3/atomic_write", write);
    const body = new Uint8Array(await res.arrayBuffer());
    assert.equal(res.status, 200, new TextDecoder().decode(body));
    assert.equal(decodeAtomicWriteOutput(body).status, AtomicWriteStatus.Success);
    // The binary protocol: the same limits, the same single check by the node.
    client = await Client.connect({ endpoints: c.endpoints().split(","), timeoutMs: 10_000 });
    const got = await client.getEntry(bigKey);
    assert.deepEqual(got.value, value(0));
    const op = client.atomic();
    for (let i = 0; i < 15; i++) op.check(`bin-check-${i}`, null);
    op.set(new Uint8Array(4000).fill(0x6b), value(7));
    const r = await op.commit();
    assert.equal(r.ok, true);
    // Still refused above the raised limits.
    const tooMany = client.atomic();
    for (let i = 0; i < 21; i++) tooMany.check(`bin-check-${i}`, null);
    await assert.rejects(
      () => tooMany.commit(),
      (e) => e instanceof LimitError && e.limit === "atomic_checks",
    );
  } finally {
    await client?.close();
    await c.stop();
  }
});

Deno.test("fault: Deno clients increment a counter with check + set while the leader is SIGKILLed and restarted", async () => {
  const c = await TestCluster.create({ extraYaml: YAML });
  try {
    c.startAll();
    const first = await c.waitLeader();
    await waitFor(async () => await databaseIdOf(c, first), 10_000, "database id");
    const RUN_MS = 9_000;
    // One Deno client per node; each reads the counter, then commits check + set of value + 1.
    const code = `
      const key = ["fault", "counter"];
      const deadline = Date.now() + ${RUN_MS};
      let acked = 0, notOk = 0;
      const stamps = [];
      while (Date.now() < deadline) {
        let cur;
        try { cur = await kv.get(key); } catch { continue; }
        try {
          const r = await kv.atomic().check(cur).set(key, (cur.value ?? 0) + 1).commit();
          if (r.ok) { acked++; stamps.push(r.versionstamp); } else notOk++;
        } catch { notOk++; }
      }
      return { acked, notOk, stamps };`;
    const clients = [...c.nodes.keys()].map((n) => runInDeno(kvUrl(c, n), TOKEN, code));
    const kills: number[] = [];
    for (let round = 0; round < 2; round++) {
      await new Promise((r) => setTimeout(r, 1_500));
      const leader = await c.waitLeader();
      kills.push(leader);
      await c.kill(leader);
      await c.waitLeader(20_000, [...c.nodes.keys()].filter((x) => x !== leader));
      await new Promise((r) => setTimeout(r, 700));
      c.start(leader);
    }
    const results = await Promise.all(clients) as {
      acked: number;
      notOk: number;
      stamps: string[];
    }[];
    const acked = results.reduce((n, r) => n + r.acked, 0);
    const notOk = results.reduce((n, r) => n + r.notOk, 0);
    const kv = await openKv(kvUrl(c, await c.waitLeader()), { token: TOKEN });
    let final: number;
    try {
      final = (await kv.get<number>(["fault", "counter"])).value ?? 0;
    } finally {
      kv.close();
    }
    console.log(`kills ${kills.join(", ")}: acked ${acked}, not ok ${notOk}, final ${final}`);
    assert.ok(acked > 0);
    assert.ok(final >= acked, `final ${final} < acknowledged ${acked}`);
    assert.ok(final <= acked + notOk, `final ${final} > acked ${acked} + not ok ${notOk}`);
    // Versionstamps never repeat, and each client's go forward.
    const all = results.flatMap((r) => r.stamps);
    assert.equal(new Set(all).size, all.length, "a versionstamp repeated");
    for (const r of results) {
      for (let i = 1; i < r.stamps.length; i++) assert.ok(r.stamps[i] > r.stamps[i - 1]);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("README 'Use gokv as your Deno KV': its program runs under Deno's own client against a 3-node cluster", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("## Use gokv as your Deno KV"));
  const blocks = [...section.matchAll(/```(\w+)[^\n]*\n([\s\S]*?)```/g)].map((m) => [m[1], m[2]]);
  const [sh, twoLines, program] = blocks;
  // The two lines a Deno user changes: the token (that of conf/config.yaml) and the URL.
  const config = await Deno.readTextFile(new URL("../conf/config.yaml", import.meta.url));
  const token = /access_token: (\S+)/.exec(config)![1];
  assert.equal(sh[0], "sh");
  assert.match(sh[1], new RegExp(`export DENO_KV_ACCESS_TOKEN=${token}\\b`));
  const openLine = twoLines[1].split("//")[0].trim();
  assert.ok(program[1].startsWith(openLine), "the program opens the database as the two lines say");
  const c = await TestCluster.create({ extraYaml: YAML });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    await waitFor(async () => await databaseIdOf(c, leader), 10_000, "database id");
    const code = program[1].replace("http://127.0.0.1:9001/kv", kvUrl(c, leader));
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/readme.ts`, code);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--unstable-kv", `${dir}/readme.ts`],
        env: { DENO_KV_ACCESS_TOKEN: TOKEN, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      // What the README's comments say it prints.
      assert.deepEqual(stdout.trim().split("\n"), [
        "Ada Lovelace 20",
        "true",
        '[ "users", "ada" ] Ada Lovelace',
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await c.stop();
  }
});

Deno.test("deno task cluster prints the KV Connect URL and token, and Deno's client works with them", async () => {
  const c = await TestCluster.create({ extraYaml: YAML });
  const run = `${c.dir}/run`;
  const script = new URL("../scripts/cluster.ts", import.meta.url).pathname;
  const cluster = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, ...args, "--config", c.configPath, "--run-dir", run],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
  try {
    const out = await cluster(["start"]);
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    const m = /deno kv: (http:\/\/\S+\/kv) .*DENO_KV_ACCESS_TOKEN=(\S+)\)/.exec(text);
    assert.ok(m, text);
    assert.equal(m[2], TOKEN);
    const got = await runInDeno(
      m[1],
      m[2],
      `await kv.set(["printed"], "url works"); return (await kv.get(["printed"])).value;`,
    );
    assert.equal(got, "url works");
  } finally {
    await cluster(["stop"]);
    await c.stop();
  }
});

Deno.test("with a tokens file: Deno's client uses its tokens with their roles and key prefixes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gokv-kvtok-" });
  const tokens = `${dir}/tokens.yaml`;
  const T = { reader: "reader-token-0123456789", writer: "writer-token-0123456789" };
  const scoped = "scoped-token-0123456789";
  await Deno.writeTextFile(
    tokens,
    [
      "tokens:",
      `  - { name: viewer, role: read, hash: "${hashToken(T.reader)}" }`,
      `  - { name: app, role: write, hash: "${hashToken(T.writer)}" }`,
      // Deno KV keys are tuple-encoded: the prefix of the keys ["mine", ...] is 0x02 "mine" 0x00.
      `  - { name: mine, role: write, prefixes: ["\\x02mine\\x00"], hash: "${hashToken(scoped)}" }`,
    ].join("\n") + "\n",
  );
  const c = await TestCluster.create({
    extraYaml: "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n" +
      `security:\n  tokens_file: ${JSON.stringify(tokens)}\n`,
    statusFetch: (http) =>
      fetch(`http://${http}/v1/status`, {
        headers: { authorization: `Bearer ${T.reader}` },
        signal: AbortSignal.timeout(1000),
      }),
  });
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const url = kvUrl(c, leader);
    const tryWrite = (key: string) =>
      `try { await kv.set(${key}, 1); return "ok"; } catch (e) { return e.message; }`;
    assert.equal(await runInDeno(url, T.writer, tryWrite(`["any", 1]`)), "ok");
    assert.match(
      await runInDeno(url, T.reader, tryWrite(`["any", 2]`)) as string,
      /status=403.*may only read/,
    );
    assert.equal(
      await runInDeno(url, T.reader, `return (await kv.get(["any", 1])).value;`),
      1,
    );
    assert.equal(await runInDeno(url, scoped, tryWrite(`["mine", 1]`)), "ok");
    assert.match(await runInDeno(url, scoped, tryWrite(`["theirs", 1]`)) as string, /status=403/);
    // A token not in the file is refused at the metadata exchange (Deno's client fails open).
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--unstable-kv", `await Deno.openKv(${JSON.stringify(url)});`],
      env: { DENO_KV_ACCESS_TOKEN: "not-a-token-0123456789", NO_COLOR: "1" },
      stderr: "piped",
      stdout: "piped",
    }).output();
    assert.notEqual(out.code, 0);
    assert.match(new TextDecoder().decode(out.stderr), /Invalid access token/);
  } finally {
    await c.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
