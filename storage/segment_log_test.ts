import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryType } from "../raft/types.ts";
import { CorruptionError } from "./errors.ts";
import { SegmentLogStore } from "./segment_log.ts";
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

Deno.test("segment log: a torn tail is cut off on open and writing continues", async () => {
  await withDir(async (dir) => {
    let log = await SegmentLogStore.open(dir);
    log.append(ents(1, 10));
    await log.sync();
    log.append(ents(11, 12));
    await log.sync();
    await log.close();
    const [seg] = segments(dir);
    const path = join(dir, seg);
    const full = Deno.readFileSync(path);
    // Cut in the middle of the last record (entry 12), then add junk as a crash might.
    const cut = full.length - 20;
    Deno.writeFileSync(path, new Uint8Array([...full.subarray(0, cut), 0, 0, 0, 7, 1, 2]));
    const warnings: string[] = [];
    const logger = {
      debug() {},
      info() {},
      warn(msg: string) {
        warnings.push(msg);
      },
      error() {},
    };
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
