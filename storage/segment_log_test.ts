import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryType } from "../raft/types.ts";
import { CorruptionError, StorageIoError } from "./errors.ts";
import { FaultEnv, InjectedIoError } from "../lsm/fault_env.ts";
import { SegmentLogStore } from "./segment_log.ts";
import { ByteWriter } from "./bytes.ts";
import {
  RecordType,
  scanSegment,
  SEGMENT_MAGIC_V1,
  writeEntryRecord,
  writeHeaderRecord,
} from "./segment_format.ts";
import { entryPayload, payloadMatches } from "./testdata/payload.ts";

const conf = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [] };

function ents(lo: number, hi: number, term = 1) {
  const out = [];
  for (let i = lo; i <= hi; i++) {
    out.push({ index: i, term, type: EntryType.Normal, data: entryPayload(i, term) });
  }
  return out;
}

function segments(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((d) => d.name).filter((n) => n.startsWith("wal-")).sort();
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-seglog-" });
  try {
    await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** A logger that keeps the warnings. */
function warningLogger() {
  const warnings: string[] = [];
  const logger = {
    debug() {},
    info() {},
    warn(msg: string) {
      warnings.push(msg);
    },
    error() {},
  };
  return { warnings, logger };
}

function checkEntries(log: SegmentLogStore, lo: number, hi: number): void {
  const got = log.entries(lo, hi + 1);
  assert.equal(got.length, hi - lo + 1);
  for (const e of got) assert.ok(payloadMatches(e.data, e.index, e.term), `entry ${e.index}`);
}

Deno.test("segment log: one sync writes a whole batch with one fdatasync", async () => {
  await withDir(async (dir) => {
    const log = await SegmentLogStore.open(dir);
    const before = log.stats().syncs as number;
    for (let i = 1; i <= 64; i++) log.append(ents(i, i));
    log.setHardState({ term: 1, vote: 1, commit: 64 });
    await log.sync();
    assert.equal(log.stats().syncs, before + 1);
    await log.sync(); // nothing buffered: no fdatasync
    assert.equal(log.stats().syncs, before + 1);
    await log.close();
  });
});

Deno.test("segment log: segments roll at their size and covered ones are deleted", async () => {
  await withDir(async (dir) => {
    let log = await SegmentLogStore.open(dir, { segmentBytes: 4096 });
    for (let i = 1; i <= 200; i += 10) {
      log.append(ents(i, i + 9));
      await log.sync();
    }
    const rolled = segments(dir).length;
    assert.ok(rolled >= 5, `expected several segments, got ${rolled}`);
    log.createSnapshot({ meta: { index: 150, term: 1, conf }, data: new Uint8Array([1]) });
    await log.sync();
    const left = segments(dir).length;
    assert.ok(left < rolled, `covered segments deleted (${rolled} -> ${left})`);
    await log.close();
    log = await SegmentLogStore.open(dir, { segmentBytes: 4096 });
    assert.equal(log.firstIndex(), 151);
    assert.equal(log.lastIndex(), 200);
    checkEntries(log, 151, 200);
    assert.deepEqual(log.snapshot().data, new Uint8Array([1]));
    // A discarding snapshot install makes every older segment deletable.
    const beforeDiscard = segments(dir);
    assert.ok(beforeDiscard.length >= 2);
    log.applySnapshot({ meta: { index: 300, term: 9, conf }, data: new Uint8Array([2]) });
    await log.sync();
    assert.deepEqual(segments(dir), beforeDiscard.slice(-1));
    log.append(ents(301, 320, 9));
    await log.sync();
    for (let i = 321; i <= 400; i += 10) {
      log.append(ents(i, i + 9, 9));
      await log.sync();
    }
    log.createSnapshot({ meta: { index: 305, term: 9, conf }, data: new Uint8Array([3]) });
    await log.sync();
    await log.close();
    log = await SegmentLogStore.open(dir, { segmentBytes: 4096 });
    assert.equal(log.firstIndex(), 306);
    assert.equal(log.lastIndex(), 400);
    assert.equal(log.term(305), 9);
    checkEntries(log, 306, 400);
    await log.close();
  });
});

Deno.test("segment log: snapshot member contexts are kept by the Snapshot record and every later segment's Header", async () => {
  await withDir(async (dir) => {
    const memberContexts = [
      { id: 4, context: new Uint8Array([1, 4]) },
      { id: 7, context: new Uint8Array([7, 7, 7]) },
    ];
    let log = await SegmentLogStore.open(dir, { segmentBytes: 4096 });
    log.append(ents(1, 20));
    log.createSnapshot({
      meta: { index: 10, term: 1, conf, memberContexts },
      data: new Uint8Array([5]),
    });
    await log.sync();
    const want = { index: 10, term: 1, conf, memberContexts };
    assert.deepEqual(log.snapshotMeta(), want);
    for (let i = 21; i <= 200; i += 10) {
      log.append(ents(i, i + 9));
      await log.sync();
    }
    const segs = segments(dir);
    assert.ok(segs.length >= 3, `rolled: ${segs}`);
    const header = scanSegment(Deno.readFileSync(join(dir, segs[segs.length - 1]))).records[0];
    assert.equal(header.type, RecordType.Header);
    assert.deepEqual(header.type === RecordType.Header && header.meta, want);
    await log.close();
    log = await SegmentLogStore.open(dir, { segmentBytes: 4096 });
    assert.deepEqual(log.snapshotMeta(), want);
    assert.deepEqual(log.snapshot().meta, want);
    assert.deepEqual(log.snapshot().data, new Uint8Array([5]));
    // An installed snapshot without contexts has none.
    log.applySnapshot({ meta: { index: 300, term: 2, conf }, data: new Uint8Array([6]) });
    await log.sync();
    await log.close();
    log = await SegmentLogStore.open(dir, { segmentBytes: 4096 });
    assert.deepEqual(log.snapshotMeta(), { index: 300, term: 2, conf });
    await log.close();
  });
});

Deno.test("segment log: a torn tail is cut off on open and writing continues", async () => {
  await withDir(async (dir) => {
    let log = await SegmentLogStore.open(dir);
    log.append(ents(1, 10));
    await log.sync();
    log.append(ents(11, 11));
    await log.sync();
    log.append(ents(12, 12));
    await log.sync();
    await log.close();
    const [seg] = segments(dir);
    const path = join(dir, seg);
    const full = Deno.readFileSync(path);
    // Cut in the middle of the last batch (entry 12), then add junk as a crash might.
    const cut = full.length - 20;
    Deno.writeFileSync(path, new Uint8Array([...full.subarray(0, cut), 0, 0, 0, 7, 1, 2]));
    const { warnings, logger } = warningLogger();
    log = await SegmentLogStore.open(dir, { logger });
    assert.equal(log.lastIndex(), 11);
    assert.equal(warnings.length, 1);
    checkEntries(log, 1, 11);
    log.append(ents(12, 13, 2));
    await log.sync();
    await log.close();
    log = await SegmentLogStore.open(dir);
    assert.equal(log.lastIndex(), 13);
    assert.equal(log.term(12), 2);
    await log.close();
  });
});

Deno.test("segment log: a checksum mismatch before the tail is a CorruptionError", async () => {
  await withDir(async (dir) => {
    const log = await SegmentLogStore.open(dir);
    for (let i = 1; i <= 20; i++) {
      log.append(ents(i, i));
      await log.sync();
    }
    await log.close();
    const [seg] = segments(dir);
    const path = join(dir, seg);
    const buf = Deno.readFileSync(path);
    buf[Math.floor(buf.length / 2)] ^= 0x40;
    Deno.writeFileSync(path, buf);
    await assert.rejects(() => SegmentLogStore.open(dir), (e) => {
      assert.ok(e instanceof CorruptionError);
      assert.equal(e.file, seg);
      assert.ok(e.offset > 0 && e.offset < buf.length);
      return true;
    });
  });
});

Deno.test("segment log: a missing snapshot file is a CorruptionError", async () => {
  await withDir(async (dir) => {
    const log = await SegmentLogStore.open(dir);
    log.append(ents(1, 5));
    log.createSnapshot({ meta: { index: 3, term: 1, conf }, data: new Uint8Array([9]) });
    await log.sync();
    await log.close();
    for (const d of Deno.readDirSync(dir)) {
      if (d.name.startsWith("snap-")) Deno.removeSync(join(dir, d.name));
    }
    await assert.rejects(() => SegmentLogStore.open(dir), CorruptionError);
  });
});

/** A copy of the segment bytes of a one-entry log whose entry data is `data` (what a value holding
 * a WAL file would contain). */
async function encodedLog(data: Uint8Array): Promise<Uint8Array> {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-seglog-" });
  try {
    const log = await SegmentLogStore.open(dir);
    log.append([{ index: 1, term: 1, type: EntryType.Normal, data }]);
    log.setHardState({ term: 1, vote: 1, commit: 1 });
    await log.sync();
    await log.close();
    return Deno.readFileSync(join(dir, segments(dir)[0]));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("segment log: a torn tail whose entry data embeds valid-looking records opens (issue 11 item 12)", async () => {
  // The value holds a whole segment file, every record of it valid: what a backup stored as a value
  // looks like. Before the fix the open scanned every byte offset for a valid record, found these
  // inside the torn entry and refused to open with a CorruptionError.
  const embedded = await encodedLog(entryPayload(7, 1));
  const value = new Uint8Array(embedded.length + 64);
  value.set(embedded, 16);
  await withDir(async (dir) => {
    let log = await SegmentLogStore.open(dir);
    for (let i = 1; i <= 5; i++) {
      log.append(ents(i, i));
      log.setHardState({ term: 1, vote: 1, commit: i });
      await log.sync();
    }
    log.append([{ index: 6, term: 1, type: EntryType.Normal, data: value }]);
    await log.sync();
    await log.close();
    const [seg] = segments(dir);
    const path = join(dir, seg);
    const full = Deno.readFileSync(path);
    // The crash kept the write up to 10 bytes before its end: the embedded records are whole.
    Deno.writeFileSync(path, full.subarray(0, full.length - 10));
    const { warnings, logger } = warningLogger();
    log = await SegmentLogStore.open(dir, { logger });
    assert.equal(log.lastIndex(), 5, "only the torn entry is dropped");
    checkEntries(log, 1, 5);
    assert.deepEqual(log.initialState().hardState, { term: 1, vote: 1, commit: 5 });
    assert.equal(warnings.length, 1);
    await log.close();
  });
});

Deno.test("segment log: damage before an entry that embeds valid-looking records is still corruption", async () => {
  const embedded = await encodedLog(entryPayload(7, 1));
  await withDir(async (dir) => {
    const log = await SegmentLogStore.open(dir);
    for (let i = 1; i <= 5; i++) {
      log.append([{ index: i, term: 1, type: EntryType.Normal, data: embedded }]);
      await log.sync();
    }
    await log.close();
    const [seg] = segments(dir);
    const path = join(dir, seg);
    const buf = Deno.readFileSync(path);
    // Flip a bit in the third entry's data (synced; two more synced entries follow it).
    const third = buf.length - Math.floor(2.5 * embedded.length);
    buf[third] ^= 0x10;
    Deno.writeFileSync(path, buf);
    await assert.rejects(() => SegmentLogStore.open(dir), (e) => {
      assert.ok(e instanceof CorruptionError, String(e));
      assert.equal(e.file, seg);
      return true;
    });
  });
});

Deno.test("segment log: a v1 log is read, and writing continues in a new v2 segment", async () => {
  await withDir(async (dir) => {
    const w = new ByteWriter();
    w.raw(SEGMENT_MAGIC_V1);
    const empty = { voters: [], votersOutgoing: [], learners: [], learnersNext: [] };
    writeHeaderRecord(w, { index: 0, term: 0, conf: empty }, { term: 0, vote: 0, commit: 0 }, "v1");
    for (const e of ents(1, 8)) writeEntryRecord(w, e, "v1");
    Deno.writeFileSync(join(dir, "wal-0000000000000001.log"), w.finish());
    let log = await SegmentLogStore.open(dir);
    assert.equal(log.lastIndex(), 8);
    checkEntries(log, 1, 8);
    assert.deepEqual(segments(dir), ["wal-0000000000000001.log", "wal-0000000000000002.log"]);
    log.append(ents(9, 12));
    await log.sync();
    await log.close();
    const v2 = Deno.readFileSync(join(dir, "wal-0000000000000002.log"));
    assert.equal(new TextDecoder().decode(v2.subarray(0, 8)), "GKVWAL02");
    log = await SegmentLogStore.open(dir);
    checkEntries(log, 1, 12);
    await log.close();
  });
});

Deno.test("segment log: a failed fdatasync fails the store for good with StorageIoError (never retried)", async () => {
  const env = new FaultEnv();
  const log = await SegmentLogStore.open("/wal", { env });
  log.append(ents(1, 3));
  await log.sync();
  let syncs = 0;
  env.onOp = (c) => {
    if (c.op !== "sync") return undefined;
    syncs++;
    return "eio";
  };
  log.append(ents(4, 4));
  const err = await log.sync().then(() => undefined, (e) => e);
  assert.ok(err instanceof StorageIoError, String(err));
  assert.equal(err.fatal, true);
  assert.ok(err.cause instanceof InjectedIoError);
  assert.equal(syncs, 1);
  // Every later write or sync rejects with the same error, and no fdatasync is tried again.
  await assert.rejects(() => log.sync(), (e) => e === err);
  assert.throws(() => log.append(ents(5, 5)), (e) => e === err);
  assert.throws(() => log.setHardState({ term: 2, vote: 1, commit: 3 }), (e) => e === err);
  assert.equal(syncs, 1);
  assert.equal(log.failure, err);
  await log.close();
  assert.equal(syncs, 1, "close does not sync a failed store");
  // After the restart the synced entries are there.
  env.onOp = undefined;
  const again = await SegmentLogStore.open("/wal", { env: env.crash() });
  assert.ok(again.lastIndex() >= 3);
  checkEntries(again, 1, 3);
  await again.close();
});

Deno.test("segment log: records added while an fdatasync runs go into the next batch; a power cut anywhere keeps every synced entry", async () => {
  const snapData = (i: number) => new TextEncoder().encode(`state at ${i}`);
  /** Rounds of 5 entries; each round's sync runs while the next round's entries, hard state
   * and (every 3rd round) a snapshot are added. Returns the last entry index acknowledged. */
  const workload = async (env: FaultEnv, acked: { index: number }) => {
    const log = await SegmentLogStore.open("/wal", { env, segmentBytes: 2048 });
    log.append(ents(1, 5));
    log.setHardState({ term: 1, vote: 1, commit: 5 });
    for (let round = 1; round <= 24; round++) {
      const synced = round * 5;
      const p = log.sync();
      // A macrotask later the sync has written its batch and may still be in its fdatasync.
      await new Promise((r) => setTimeout(r, 0));
      // The current snapshot reads back while its file is being written.
      const cur = log.snapshot();
      if (cur.meta.index > 0) assert.deepEqual(cur.data, snapData(cur.meta.index));
      log.append(ents(synced + 1, synced + 5));
      log.setHardState({ term: 1, vote: 1, commit: synced + 5 });
      if (round % 3 === 0) {
        const at = synced - 2;
        log.createSnapshot({ meta: { index: at, term: 1, conf }, data: snapData(at) });
      }
      await p;
      acked.index = Math.max(acked.index, synced);
    }
    await log.close();
    acked.index = 125;
  };
  // A run without faults counts the operations to crash at.
  const probe = new FaultEnv({ seed: 1 });
  await workload(probe, { index: 0 });
  const total = probe.opCount;
  assert.ok(total > 100, `${total} operations`);
  for (let n = 1; n <= total; n++) {
    const env = new FaultEnv({ seed: n, tornWrites: true, reorderSyncs: true });
    env.crashAtOp(n);
    const acked = { index: 0 };
    await workload(env, acked).catch((e) => {
      if (e instanceof assert.AssertionError) throw e;
    });
    const log = await SegmentLogStore.open("/wal", { env: env.crash() });
    try {
      assert.ok(log.lastIndex() >= acked.index, `crash at op ${n}: lost acknowledged entries`);
      checkEntries(log, log.firstIndex(), log.lastIndex());
      const snap = log.snapshot();
      if (snap.meta.index > 0) assert.deepEqual(snap.data, snapData(snap.meta.index));
      assert.ok(
        log.firstIndex() === snap.meta.index + 1,
        `crash at op ${n}: log starts after its snapshot`,
      );
    } finally {
      await log.close();
    }
  }
});

Deno.test("segment log: a snapshot of several MiB is written in slices, reads back, and a damaged slice is corruption", async () => {
  // The file is written 1 MiB at a time with the event loop running between slices (it used to
  // be copied, checksummed and written in one go: seconds for a large state).
  await withDir(async (dir) => {
    const data = new Uint8Array(5 * (1 << 20) + 123);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 12)) & 0xff;
    const log = await SegmentLogStore.open(dir);
    log.append(ents(1, 5));
    log.createSnapshot({ meta: { index: 4, term: 1, conf }, data });
    let turns = 0;
    let on = true;
    const tick = () => {
      if (!on) return;
      turns++;
      setTimeout(tick, 0);
    };
    setTimeout(tick, 0);
    await log.sync();
    on = false;
    assert.ok(turns >= 1, "timers ran while the snapshot file was written");
    await log.close();
    const reopened = await SegmentLogStore.open(dir);
    assert.equal(reopened.snapshotMeta().index, 4);
    assert.deepEqual(reopened.snapshot().data, data);
    checkEntries(reopened, 5, 5);
    await reopened.close();
    const snap = [...Deno.readDirSync(dir)].find((d) => d.name.startsWith("snap-"))!.name;
    const bytes = Deno.readFileSync(join(dir, snap));
    bytes[3 << 20] ^= 0x40;
    Deno.writeFileSync(join(dir, snap), bytes);
    const damaged = await SegmentLogStore.open(dir);
    assert.throws(() => damaged.snapshot(), CorruptionError);
    await damaged.close();
  });
});
