import assert from "node:assert/strict";
import { clientCommand, type CliIO } from "./cli.ts";
import {
  FAILED,
  formatStatusTable,
  formatTable,
  progressBar,
  SUCCESS_NIL,
  SUCCESS_NOT_FOUND,
  successValue,
} from "./format.ts";
import { startFakeNode } from "../server/testing.ts";

function capture(): CliIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (l) => stdout.push(l),
    err: (l) => stderr.push(l),
    progress: () => {},
  };
}

function deadAddress(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return `127.0.0.1:${port}`;
}

Deno.test("result lines are exactly go-kv's", () => {
  assert.equal(SUCCESS_NIL, "✅ Success! Result: <nil>");
  assert.equal(SUCCESS_NOT_FOUND, "✅ Success! Result: key not found");
  assert.equal(successValue("hello world"), "✅ Success! Value: hello world");
  assert.equal(FAILED, "❌ Failed to execute command.");
});

Deno.test("set, get and delete print go-kv's lines and exit 0", async () => {
  const n = await startFakeNode(1);
  try {
    const ep = ["--endpoints", n.address];
    let io = capture();
    assert.equal(await clientCommand("set", ["hello", "hello world", ...ep], io), 0);
    assert.deepEqual(io.stdout, ["✅ Success! Result: <nil>"]);
    io = capture();
    assert.equal(await clientCommand("get", ["hello", ...ep], io), 0);
    assert.deepEqual(io.stdout, ["✅ Success! Value: hello world"]);
    io = capture();
    assert.equal(await clientCommand("delete", ["hello", ...ep], io), 0);
    assert.deepEqual(io.stdout, ["✅ Success! Result: <nil>"]);
    io = capture();
    assert.equal(
      await clientCommand("get", ["hello", ...ep, "--consistency", "serializable"], io),
      0,
    );
    assert.deepEqual(io.stdout, ["✅ Success! Result: key not found"]);
    assert.deepEqual(io.stderr, []);
  } finally {
    await n.close();
  }
});

Deno.test("scan, member list, status and leader transfer print their results", async () => {
  const n = await startFakeNode(1, { voters: [1, 2] });
  n.book.learn({ id: 1, peer: "127.0.0.1:7001", client: n.address, http: "127.0.0.1:9001" });
  try {
    const ep = ["--endpoints", n.address];
    for (const k of ["p1", "p2", "q1"]) await clientCommand("set", [k, `v-${k}`, ...ep], capture());
    let io = capture();
    assert.equal(await clientCommand("scan", ["--prefix", "p", ...ep], io), 0);
    assert.deepEqual(io.stdout, ["p1\tv-p1", "p2\tv-p2"]);
    io = capture();
    assert.equal(await clientCommand("scan", ["--limit", "1", "--json", ...ep], io), 0);
    assert.deepEqual(JSON.parse(io.stdout.join("\n")), [{ key: "p1", value: "v-p1" }]);
    io = capture();
    assert.equal(await clientCommand("member", ["list", ...ep], io), 0);
    assert.match(io.stdout[0], /\| +ID +\| +ROLE +\|/);
    assert.match(io.stdout[0], /\| 1 +\| voter +\| true +\| 127\.0\.0\.1:7001/);
    io = capture();
    assert.equal(await clientCommand("status", ["--json", ...ep], io), 0);
    const rows = JSON.parse(io.stdout[0]);
    assert.equal(rows[0].status.role, "leader");
    io = capture();
    assert.equal(await clientCommand("status", [...ep], io), 0);
    assert.match(io.stdout[0], /ENDPOINT/);
    io = capture();
    assert.equal(await clientCommand("leader", ["transfer", "2", ...ep], io), 0);
    assert.deepEqual(n.raft.transfers, [2]);
  } finally {
    await n.close();
  }
});

Deno.test("a failure prints the failure line on stdout, the reason on stderr, exit 1", async () => {
  const io = capture();
  const code = await clientCommand("set", [
    "k",
    "v",
    "--endpoints",
    deadAddress(),
    "--timeout-ms",
    "300",
  ], io);
  assert.equal(code, 1);
  assert.deepEqual(io.stdout, ["❌ Failed to execute command."]);
  assert.match(io.stderr.join("\n"), /UnavailableError/);
});

Deno.test("usage errors go to stderr with exit 2, --help to stdout with exit 0", async () => {
  for (
    const [name, argv] of [
      ["set", ["only-key"]],
      ["get", []],
      ["get", ["k", "--bogus"]],
      ["get", ["k", "--consistency", "eventual"]],
      ["scan", ["--limit", "-1"]],
      ["member", ["frob"]],
      ["member", ["add", "x", "a:1", "b:2", "c:3"]],
      ["leader", ["transfer"]],
      ["set", ["k", "v", "--endpoints", "nohostport"]],
      ["bench", ["--read-ratio", "2"]],
    ] as [string, string[]][]
  ) {
    const io = capture();
    assert.equal(await clientCommand(name, argv, io), 2, `${name} ${argv.join(" ")}`);
    assert.deepEqual(io.stdout, []);
    assert.ok(io.stderr.length > 0);
  }
  for (const name of ["set", "get", "delete", "scan", "member", "leader", "status", "bench"]) {
    const io = capture();
    assert.equal(await clientCommand(name, ["--help"], io), 0);
    assert.match(io.stdout[0], /^Usage:/);
  }
});

Deno.test("a missing config file is a configuration error (exit 2)", async () => {
  const io = capture();
  assert.equal(await clientCommand("get", ["k", "--config", "/nonexistent/gokv.yaml"], io), 2);
  assert.match(io.stderr.join("\n"), /config/);
});

Deno.test("bench runs a closed loop and reports throughput and percentiles", async () => {
  const n = await startFakeNode(1);
  try {
    const io = capture();
    const code = await clientCommand(
      "bench",
      [
        "--endpoints",
        n.address,
        "--count",
        "300",
        "--clients",
        "8",
        "--read-ratio",
        "0.5",
        "--keys",
        "50",
        "--json",
      ],
      io,
    );
    assert.equal(code, 0, io.stderr.join("\n"));
    const r = JSON.parse(io.stdout[0]);
    assert.equal(r.ops, 300);
    assert.equal(r.errors, 0);
    assert.ok(r.gets > 0 && r.puts > 0);
    assert.ok(r.latency.p50 <= r.latency.p99 && r.latency.p99 <= r.latency.max);
  } finally {
    await n.close();
  }
});

Deno.test("tables and progress bars render aligned", () => {
  assert.equal(
    formatTable(["A", "LONGER"], [["xyz", "1"]]),
    [
      "+-----+--------+",
      "|  A  | LONGER |",
      "+-----+--------+",
      "| xyz | 1      |",
      "+-----+--------+",
    ].join("\n"),
  );
  assert.equal(progressBar(0.5, 10, "x"), "[#####.....]  50% x");
  const t = formatStatusTable([{ endpoint: "h:1", error: new Error("down") }]);
  assert.match(t, /\| h:1 +\|.*\| down +\|/);
});

Deno.test("bench shows a redrawn bar with live ops/s on a terminal and plain lines when piped", async () => {
  const n = await startFakeNode(1);
  try {
    for (const terminal of [false, true]) {
      const chunks: string[] = [];
      const io = { ...capture(), terminal, progress: (t: string) => chunks.push(t) };
      const args = [
        "--endpoints",
        n.address,
        "--duration", // long enough for two plain lines even on a loaded machine
        "3",
        "--clients",
        "4",
        "--keys",
        "20",
      ];
      assert.equal(await clientCommand("bench", args, io), 0, io.stderr.join("\n"));
      const text = chunks.join("");
      if (terminal) {
        assert.ok(chunks.length >= 3, `redraws: ${chunks.length}`); // bar(s), final bar, newline
        assert.ok(chunks.slice(0, -1).every((c) => c.startsWith("\r[")), text);
        assert.match(text, /100% \d+ ops {2}\d+ ops\/s/);
        assert.ok(text.endsWith("\n"));
      } else {
        assert.ok(!text.includes("\r"), "no carriage returns when piped");
        const lines = text.trimEnd().split("\n");
        assert.ok(lines.length >= 2, text);
        for (const l of lines) assert.match(l, /^bench: \d+% \d+ ops \d+ ops\/s$/);
      }
    }
  } finally {
    await n.close();
  }
});

Deno.test("get -w json shows the versionstamp; cas writes only on the expected versionstamp", async () => {
  const n = await startFakeNode(1);
  try {
    const ep = ["--endpoints", n.address];
    let io = capture();
    assert.equal(await clientCommand("get", ["k", "-w", "json", ...ep], io), 0);
    assert.deepEqual(JSON.parse(io.stdout[0]), { key: "k", value: null, versionstamp: null });
    // "-": only when missing.
    io = capture();
    assert.equal(await clientCommand("cas", ["k", "-", "v1", ...ep], io), 0);
    const vs1 = /Result: ([0-9a-f]{20})$/.exec(io.stdout[0])![1];
    io = capture();
    assert.equal(await clientCommand("cas", ["k", "-", "again", ...ep], io), 1);
    assert.deepEqual(io.stdout, [FAILED]);
    assert.match(io.stderr[0], /compare failed/);
    io = capture();
    assert.equal(await clientCommand("get", ["k", "-w", "json", ...ep], io), 0);
    const e = JSON.parse(io.stdout[0]);
    assert.deepEqual([e.value, e.versionstamp, e.encoding], ["v1", vs1, "bytes"]);
    io = capture();
    assert.equal(await clientCommand("cas", ["k", vs1, "v2", ...ep], io), 0);
    io = capture();
    assert.equal(await clientCommand("cas", ["k", vs1, "v3", ...ep], io), 1, "stale versionstamp");
    io = capture();
    assert.equal(await clientCommand("get", ["k", ...ep], io), 0);
    assert.deepEqual(io.stdout, [successValue("v2")]);
    io = capture();
    assert.equal(await clientCommand("cas", ["k", "nothex", "v", ...ep], io), 2);
    io = capture();
    assert.equal(await clientCommand("get", ["k", "-w", "yaml", ...ep], io), 2);
  } finally {
    await n.close();
  }
});

Deno.test("set --ttl sets an expiry; txn runs a JSON transaction from a file", async () => {
  const n = await startFakeNode(1);
  const dir = await Deno.makeTempDir();
  try {
    const ep = ["--endpoints", n.address];
    let io = capture();
    assert.equal(await clientCommand("set", ["t", "v", "--ttl", "30s", ...ep], io), 0);
    io = capture();
    await clientCommand("get", ["t", "-w", "json", ...ep], io);
    assert.ok(JSON.parse(io.stdout[0]).expireAt > Date.now() + 25_000);
    io = capture();
    assert.equal(await clientCommand("set", ["t", "v", "--ttl", "soon", ...ep], io), 2);
    const file = `${dir}/txn.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        checks: [{ key: "c", versionstamp: null }],
        mutations: [{ type: "sum", key: "c", value: "2" }, { type: "set", key: "d", value: "x" }],
      }),
    );
    io = capture();
    assert.equal(await clientCommand("txn", [file, ...ep], io), 0);
    assert.equal(JSON.parse(io.stdout[0]).ok, true);
    io = capture();
    assert.equal(
      await clientCommand("txn", [file, ...ep], io),
      1,
      "the check fails the second time",
    );
    assert.deepEqual(JSON.parse(io.stdout[0]), { ok: false, failedChecks: [0] });
    io = capture();
    await clientCommand("get", ["c", "-w", "json", ...ep], io);
    assert.deepEqual([JSON.parse(io.stdout[0]).value, JSON.parse(io.stdout[0]).encoding], [
      "2",
      "u64",
    ]);
    await Deno.writeTextFile(file, `{"mutations": [{"type": "bogus"}]}`);
    io = capture();
    assert.equal(await clientCommand("txn", [file, ...ep], io), 2);
  } finally {
    await n.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch prints the state, then one line per change, and resumes with --after", async () => {
  const n = await startFakeNode(1);
  try {
    const ep = ["--endpoints", n.address];
    await clientCommand("set", ["w/a", "1", ...ep], capture());
    let io = capture();
    const watching = clientCommand("watch", ["--prefix", "w/", "--count", "3", ...ep], io);
    // Wait (with a deadline) until the initial line is out, then change things.
    const deadline = Date.now() + 10_000;
    while (io.stdout.length < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await clientCommand("set", ["w/b", "2", ...ep], capture());
    await clientCommand("delete", ["w/a", ...ep], capture());
    assert.equal(await watching, 0);
    assert.match(io.stdout[0], /^[0-9a-f]{20} PUT w\/a 1$/);
    assert.match(io.stdout[1], /^[0-9a-f]{20} PUT w\/b 2$/);
    assert.match(io.stdout[2], /^[0-9a-f]{20} DELETE w\/a$/);
    const after = io.stdout[1].split(" ")[0];
    io = capture();
    assert.equal(
      await clientCommand("watch", [
        "--prefix",
        "w/",
        "--after",
        after,
        "--count",
        "1",
        "-w",
        "json",
        ...ep,
      ], io),
      0,
    );
    const m = JSON.parse(io.stdout[0]);
    assert.deepEqual([m.type, m.changes[0].key, m.changes[0].value], ["change", "w/a", null]);
    assert.equal(await clientCommand("watch", [...ep], capture()), 2);
  } finally {
    await n.close();
  }
});
