import assert from "node:assert/strict";
import { denoEnv } from "./env.ts";
import { CorruptionError } from "./errors.ts";
import { LOG_BLOCK, LOG_HEADER } from "./log_format.ts";
import { isV1Log, readLog } from "./log_reader.ts";
import { crc32c, maskCrc } from "./crc32c.ts";
import { LogWriter } from "./log_writer.ts";
import { prng, randomBytes, withTempDir } from "./testutil_test.ts";

async function writeLog(dir: string, records: Uint8Array[]): Promise<Uint8Array> {
  const path = `${dir}/x.log`;
  const f = denoEnv.openSync(path, { write: true, create: true, truncate: true });
  const w = new LogWriter(f, path);
  for (const r of records) w.addRecord(r);
  w.close();
  return await Deno.readFile(path);
}

function readAll(data: Uint8Array) {
  const out: Uint8Array[] = [];
  const offs: number[] = [];
  const res = readLog(data, "x.log", (p, off) => {
    out.push(p.slice());
    offs.push(off);
  });
  return { out, offs, ...res };
}

const sizes = [
  0,
  1,
  100,
  LOG_BLOCK - LOG_HEADER,
  LOG_BLOCK - LOG_HEADER - 3,
  LOG_BLOCK,
  3 * LOG_BLOCK + 17,
  5,
];

Deno.test("log records of every size round-trip across block boundaries", async () => {
  await withTempDir(async (dir) => {
    const r = prng(3);
    const recs = sizes.map((n) => randomBytes(r, n));
    const data = await writeLog(dir, recs);
    const got = readAll(data);
    assert.equal(got.tornTail, false);
    assert.equal(got.validEnd, data.length);
    assert.deepEqual(got.out, recs);
  });
});

Deno.test("log truncated anywhere inside the last record yields the earlier records (torn tail)", async () => {
  await withTempDir(async (dir) => {
    const r = prng(4);
    const recs = [randomBytes(r, 50), randomBytes(r, 40000), randomBytes(r, 30)];
    const data = await writeLog(dir, recs);
    const full = readAll(data);
    const lastStart = full.offs[2];
    for (let cut = lastStart; cut < data.length; cut += 3) {
      const got = readAll(data.subarray(0, cut));
      assert.equal(got.tornTail, cut !== lastStart);
      assert.deepEqual(got.out, recs.slice(0, 2));
      assert.equal(got.validEnd, lastStart);
    }
    // A cut inside the fragmented middle record keeps only the first.
    const got = readAll(data.subarray(0, full.offs[1] + LOG_BLOCK));
    assert.deepEqual(got.out, recs.slice(0, 1));
    assert.ok(got.tornTail);
  });
});

Deno.test("log checksum damage before the tail is reported with file and offset", async () => {
  await withTempDir(async (dir) => {
    const r = prng(5);
    const recs = Array.from({ length: 10 }, () => randomBytes(r, 200));
    const data = await writeLog(dir, recs);
    const { offs } = readAll(data);
    const bad = data.slice();
    bad[offs[4] + LOG_HEADER + 10] ^= 0x40;
    assert.throws(() => readAll(bad), (e: unknown) => {
      assert.ok(e instanceof CorruptionError);
      assert.equal(e.file, "x.log");
      assert.equal(e.offset, offs[4]);
      return true;
    });
  });
});

Deno.test("log damage in the final record, or zero fill at the end, is a torn tail", async () => {
  await withTempDir(async (dir) => {
    const r = prng(6);
    const recs = Array.from({ length: 3 }, () => randomBytes(r, 100));
    const data = await writeLog(dir, recs);
    const { offs } = readAll(data);
    const bad = data.slice();
    bad[bad.length - 5] ^= 1;
    const got = readAll(bad);
    assert.ok(got.tornTail);
    assert.equal(got.out.length, 2);
    const zeroTail = new Uint8Array(data.length + 500);
    zeroTail.set(data);
    const z = readAll(zeroTail);
    assert.equal(z.out.length, 3);
    assert.ok(z.tornTail);
    assert.equal(z.validEnd, data.length);
    assert.equal(offs.length, 3);
  });
});

Deno.test("log reader fuzz: random bytes never crash with anything but CorruptionError", () => {
  const r = prng(7);
  for (let i = 0; i < 2000; i++) {
    const data = randomBytes(r, Math.floor(r() * 300));
    if (r() < 0.5 && data.length > 7) data[6] = 1 + Math.floor(r() * 4);
    try {
      readLog(data, "fuzz.log", () => {});
    } catch (e) {
      assert.ok(e instanceof CorruptionError, String(e));
    }
  }
});

Deno.test("log v1 files (no header checksum) are recognised, v2 ones are not", async () => {
  await withTempDir(async (dir) => {
    const v2 = await writeLog(dir, [new Uint8Array([1, 2, 3])]);
    assert.equal(isV1Log(v2), false);
    // A v1 FULL fragment: masked crc32c(type + payload) | len | type | payload.
    const payload = new Uint8Array([1, 2, 3]);
    const v1 = new Uint8Array(7 + payload.length);
    v1[5] = payload.length;
    v1[6] = 1;
    v1.set(payload, 7);
    const crc = maskCrc(crc32c(v1, 7, payload.length, crc32c(v1, 6, 1)));
    new DataView(v1.buffer).setUint32(0, crc);
    assert.equal(isV1Log(v1), true);
  });
});

Deno.test("log: a damaged header is corruption anywhere except a zeroed tail", async () => {
  await withTempDir(async (dir) => {
    const r = prng(8);
    const recs = Array.from({ length: 5 }, () => randomBytes(r, 100));
    const data = await writeLog(dir, recs);
    const { offs } = readAll(data);
    for (const i of [1, 4]) {
      for (const byte of [4, 5, 6, 8]) {
        const bad = data.slice();
        bad[offs[i] + byte] ^= 0x10;
        assert.throws(() => readAll(bad), CorruptionError, `record ${i} header byte ${byte}`);
      }
    }
    // The last header cut by zero fill reads as a torn tail.
    const torn = data.slice();
    torn.fill(0, offs[4] + 5);
    const got = readAll(torn);
    assert.ok(got.tornTail);
    assert.equal(got.out.length, 4);
  });
});

Deno.test("zeros after the last record end the log (a preallocated WAL), a partial record does not", async () => {
  await withTempDir(async (dir) => {
    const recs = [new Uint8Array(100).fill(1), new Uint8Array(3 * LOG_BLOCK).fill(2)];
    const data = await writeLog(dir, recs);
    const padded = new Uint8Array(data.length + 5 * LOG_BLOCK + 123);
    padded.set(data);
    const r = readAll(padded);
    assert.equal(r.out.length, 2);
    assert.equal(r.validEnd, data.length);
    assert.equal(r.tornTail, true);
    assert.equal(r.zeroTail, true);
    // The second record cut after its first fragment, then zeros: a torn write, not an end.
    const cut = new Uint8Array(padded.length);
    cut.set(data.subarray(0, LOG_BLOCK + 50));
    const t = readAll(cut);
    assert.equal(t.out.length, 1);
    assert.equal(t.tornTail, true);
    assert.equal(t.zeroTail, false);
  });
});
