/**
 * Re-introduces each defect of issue 11 (items 5–14) in a scratch copy of the source, one at a
 * time, runs the tests that should catch it, and prints which failed: the mutation table of
 * issue 11 item 17 (the Raft rows (a)–(c), (1)–(4) are measured with simulator seeds, see
 * raft/sim/README.md). Nothing is changed in place: each mutation runs in a temporary copy of
 * the checkout.
 *
 * ```sh
 * deno run -A scripts/mutations.ts            # every mutation
 * deno run -A scripts/mutations.ts 9 13b      # some
 * ```
 *
 * A mutation whose text no longer matches the source is reported as "does not apply" (the code
 * moved: update its `find` text), never silently skipped.
 *
 * @module
 */
import { join } from "node:path";

interface Mutation {
  /** The row of the table: the item, with a letter for items with several defects. */
  id: string;
  /** The defect, as the issue describes it. */
  what: string;
  /** Edits: in `file`, the exact text `find` (must occur exactly once) becomes `replace`. */
  edits: { file: string; find: string; replace: string }[];
  /** The test files to run. */
  tests: string[];
}

const LSM_TESTS = [
  "lsm/recovery_test.ts",
  "lsm/power_loss_test.ts",
  "lsm/crash_test.ts",
  "lsm/corruption_test.ts",
  "lsm/background_failure_test.ts",
  "lsm/log_test.ts",
  "lsm/db_test.ts",
  "lsm/no_wal_test.ts",
  "storage/power_loss_test.ts",
  "storage/lsm_sm_test.ts",
];
const LOG_TESTS = [
  "storage/segment_format_test.ts",
  "storage/segment_log_test.ts",
  "storage/power_loss_test.ts",
  "storage/conformance_test.ts",
];
const RAFT_TESTS = [
  "raft/node_test.ts",
  "raft/membership_test.ts",
  "raft/snapshot_test.ts",
  "raft/scenarios_test.ts",
  "raft/sim_test.ts",
  "raft/driver_sim_test.ts",
];
const NODE_TESTS = ["tests/fatal_test.ts", "tests/memory_restart_test.ts", "server/server_test.ts"];

const MUTATIONS: Mutation[] = [
  {
    id: "5a",
    what: "a node whose storage failed (Raft halted) does not exit",
    edits: [{ file: "server/server.ts", find: "    failed.resolve(err);\n", replace: "" }],
    tests: NODE_TESTS,
  },
  {
    id: "5b",
    what: "a halted node keeps stepping messages (the Raft loop stops, the process does not)",
    edits: [{
      file: "raft/node.ts",
      find:
        "  private halt(err: Error): void {\n    if (this.fatal) return;\n    this.fatal = err;",
      replace:
        "  private halt(err: Error): void {\n    if (this.fatal) return;\n    this.stopped = true;",
    }],
    tests: [...NODE_TESTS, "raft/node_test.ts", "raft/driver_sim_test.ts"],
  },
  {
    id: "6",
    what: "a committed conf change that fails to apply is logged and skipped",
    edits: [{
      file: "raft/node.ts",
      find: "        const r = this.rawNode.applyConfChangeEntry(e);\n",
      replace:
        "        let r;\n        try {\n          r = this.rawNode.applyConfChangeEntry(e);\n" +
        '        } catch (err) {\n          this.logger.warn("conf change skipped", { err: String(err) });\n' +
        "        }\n",
    }],
    tests: RAFT_TESTS,
  },
  {
    id: "7",
    what: "snapshot chunks from another leader continue a partial transfer",
    edits: [{
      file: "raft/raft.ts",
      find: "!r || r.from !== m.from || r.leaderTerm !== m.term || r.index !== meta.index ||",
      replace: "!r || r.index !== meta.index ||",
    }],
    tests: RAFT_TESTS,
  },
  {
    id: "8",
    what: "a memory-backend node restarts with an empty log (never catches up, may vote twice)",
    edits: [{
      file: "server/server.ts",
      find: "    throw new MemoryNodeRestartError(id, dir);",
      replace: "    return;",
    }],
    tests: NODE_TESTS,
  },
  {
    id: "9",
    what: "a corrupted WAL fragment length near the end is taken for a torn tail " +
      "(no header checksum; end > n tested before the block boundary)",
    edits: [
      {
        file: "lsm/log_reader.ts",
        find: "    if (hwant !== crc32c(data, pos, LOG_HEADER_CHECKED)) {",
        replace: "    if (hwant !== hwant) {",
      },
      {
        file: "lsm/log_reader.ts",
        find: "    if (LOG_HEADER + len > inBlock) {",
        replace: "    if (end > n) return torn();\n    if (LOG_HEADER + len > inBlock) {",
      },
    ],
    tests: LSM_TESTS,
  },
  {
    id: "10a",
    what: "recovery keeps replaying newer WALs after a torn one (no point-in-time stop)",
    edits: [{
      file: "lsm/db.ts",
      find: "        if (tornAt !== undefined) {",
      replace: "        if (tornAt !== undefined && tornAt === '') {",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "10b",
    what: "the old WAL's fdatasync at memtable switch is asynchronous (the new WAL may be " +
      "durable first)",
    edits: [{
      file: "lsm/db.ts",
      find:
        "    try {\n      old.syncSync();\n    } catch (e) {\n      throw this.failWal(e, waiters);\n    }\n",
      replace: "    old.sync().catch(() => {});\n",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "11",
    what: "block checksums verified only the first time a block is read",
    edits: [{
      file: "lsm/sstable_reader.ts",
      find: "        b = readBlockAt(this.file, this.path, off, size, into);\n",
      replace:
        "        const seen = ((globalThis as unknown as { __seen?: Set<number> }).__seen ??=\n" +
        "          new Set<number>());\n" +
        "        b = seen.has(key)\n" +
        "          ? readAt(this.file, off, size + BLOCK_TRAILER, this.path, into).subarray(0, size)\n" +
        "          : readBlockAt(this.file, this.path, off, size, into);\n" +
        "        seen.add(key);\n",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "12",
    what: "the segment log takes any later valid-looking batch for proof of mid-log corruption " +
      "(a torn tail holding encoded records refuses to open)",
    edits: [{
      file: "storage/segment_format.ts",
      find: '    if (end > buf.length) return bad("truncated", true);',
      replace: "    let later = false;\n" +
        "    for (let q = off + 1; q + BATCH_HEADER_SIZE <= buf.length && !later; q++) {\n" +
        "      later = crc32c(buf, 0, q + 4, q + BATCH_HEADER_SIZE) === dv.getUint32(q, true);\n" +
        "    }\n" +
        '    if (end > buf.length) return bad("truncated", !later);',
    }],
    tests: LOG_TESTS,
  },
  {
    id: "13a",
    what: "the memtable-switch fdatasync swallows its error (sync writes acknowledged after it)",
    edits: [{
      file: "lsm/db.ts",
      find:
        "    try {\n      old.syncSync();\n    } catch (e) {\n      throw this.failWal(e, waiters);\n    }\n",
      replace: "    try {\n      old.syncSync();\n    } catch { /* swallowed */ }\n",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "13b",
    what: "a write refused with WAL_FAILED is already in the memtable (readable, later flushed)",
    edits: [{
      file: "lsm/db.ts",
      find:
        "    if (this.wal) this.logBatch(this.wal, ops, seq, sync);\n    const mem = this.mem;\n" +
        "    for (let i = 0; i < ops.length; i++) mem.add(seq + i, ops[i].kind, ops[i].key, ops[i].value);\n",
      replace: "    const mem = this.mem;\n" +
        "    for (let i = 0; i < ops.length; i++) mem.add(seq + i, ops[i].kind, ops[i].key, ops[i].value);\n" +
        "    this.lastSeq = seq + ops.length - 1;\n    this.visibleSeq = this.lastSeq;\n" +
        "    if (this.wal) this.logBatch(this.wal, ops, seq, sync);\n",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "13c",
    what: "after a partial WAL write the pending buffer is written again at close " +
      "(the writer keeps it, and close flushes a failed WAL)",
    edits: [{
      file: "lsm/log_writer.ts",
      find: "      this.failed = e;\n      this.written += off;\n      p.len = 0;\n      throw e;",
      replace: "      throw e;",
    }, {
      file: "lsm/db.ts",
      find: "else if (this.walError !== undefined) wal.abandon();",
      replace: "else if (this.walError !== undefined) wal.close();",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "13d",
    what: "a new WAL file at memtable switch gets no directory fsync",
    edits: [{
      file: "lsm/db.ts",
      find: "      syncDir(this.dir, this.env);\n      this.vs.logAndApply({ addWals: [n] });\n",
      replace: "      this.vs.logAndApply({ addWals: [n] });\n",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "14a",
    what: "a background failure (worker crash, EIO) is not reported (silent permanent error)",
    edits: [{
      file: "lsm/db.ts",
      find: "      this.bgError = err;\n      this.reportFailure(err);\n",
      replace: "      this.bgError = err;\n",
    }],
    tests: [...LSM_TESTS, "tests/fatal_test.ts"],
  },
  {
    id: "14b",
    what: "a missing live SSTable surfaces as a raw NotFound",
    edits: [{
      file: "lsm/sstable_reader.ts",
      find: '        throw new CorruptionError(path, 0, "table file missing");',
      replace: "        throw e;",
    }],
    tests: LSM_TESTS,
  },
  {
    id: "14c",
    what: "outputs of a failed merge stay on disk until reopen",
    edits: [{
      file: "lsm/db.ts",
      find: "    const numbers = this.mergeOutputs;\n    this.mergeOutputs = [];\n",
      replace: "    const numbers: number[] = [];\n    this.mergeOutputs = [];\n",
    }],
    tests: LSM_TESTS,
  },
];

const root = new URL("..", import.meta.url).pathname;

async function copyCheckout(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "gokv-mutation-" });
  const files = new TextDecoder().decode(
    (await new Deno.Command("git", { args: ["ls-files", "-co", "--exclude-standard"], cwd: root })
      .output()).stdout,
  ).split("\n").filter((f) => f !== "");
  for (const f of files) {
    const to = join(dir, f);
    await Deno.mkdir(join(to, ".."), { recursive: true });
    try {
      await Deno.copyFile(join(root, f), to);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return dir;
}

function occurrences(text: string, find: string): number {
  let n = 0;
  for (let i = text.indexOf(find); i >= 0; i = text.indexOf(find, i + 1)) n++;
  return n;
}

interface Row {
  id: string;
  what: string;
  result: string;
  failing: string[];
}

async function run(m: Mutation): Promise<Row> {
  const dir = await copyCheckout();
  try {
    for (const e of m.edits) {
      const path = join(dir, e.file);
      const text = await Deno.readTextFile(path);
      const n = occurrences(text, e.find);
      if (n !== 1) {
        return {
          id: m.id,
          what: m.what,
          result: `does not apply (${e.file}: ${n} matches)`,
          failing: [],
        };
      }
      await Deno.writeTextFile(path, text.replace(e.find, e.replace));
    }
    const out = await new Deno.Command("deno", {
      args: ["test", "-A", "--parallel", ...m.tests],
      cwd: dir,
      env: { NO_COLOR: "1" },
      // A mutation that makes a test hang counts as caught only through this bound.
      signal: AbortSignal.timeout(15 * 60_000),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const failing = new Set<string>();
    let inFailures = false;
    for (const line of text.split("\n")) {
      if (/^ ERRORS $/.test(line) || /^ FAILURES $/.test(line)) inFailures = true;
      const f = inFailures && line.match(/^(.+?) => (\S+?):\d+:\d+$/);
      if (f) failing.add(`${f[2].replace(/^\.\//, "")}: ${f[1]}`);
      if (/^error: TS\d+/.test(line)) failing.add(`(does not compile) ${line}`);
    }
    const summary = text.match(/(ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed/);
    const result = summary
      ? `${summary[3]} failed of ${+summary[2] + +summary[3]}`
      : `exit ${out.code}`;
    return { id: m.id, what: m.what, result, failing: [...failing] };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const want = Deno.args;
  const rows: Row[] = [];
  for (const m of MUTATIONS) {
    if (want.length > 0 && !want.includes(m.id)) continue;
    const row = await run(m);
    rows.push(row);
    console.log(`(${row.id}) ${row.what}: ${row.result}`);
    for (const f of row.failing) console.log(`    ${f}`);
  }
  const missed = rows.filter((r) => r.failing.length === 0);
  console.log(
    missed.length === 0
      ? `every mutation (${rows.length}) is caught`
      : `NOT caught: ${missed.map((r) => r.id).join(", ")}`,
  );
  if (missed.length > 0) Deno.exit(1);
}
