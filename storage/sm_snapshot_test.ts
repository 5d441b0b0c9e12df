import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import { Pacer } from "./settle.ts";
import { readSnapshot, readSnapshotPaced, SnapshotWriter } from "./sm_snapshot.ts";

/** The snapshot format of storage/sm_snapshot.ts written the plain way, in one buffer. */
function reference(appliedIndex: number, records: [Uint8Array, Uint8Array][]): Uint8Array {
  const w = new ByteWriter();
  w.raw(new TextEncoder().encode("GKVSNAP2"));
  w.u64(appliedIndex);
  for (const [k, v] of records) {
    w.u8(1);
    w.bytes(k);
    w.bytes(v);
  }
  w.u8(0);
  w.u32(crc32c(w.view()));
  return w.finish();
}

// User keys (under 0x01) are snapshot content.
const userKey = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((k) => Uint8Array.of(1, ...k));
// Mostly small values, some past the 1 MiB chunk (a chunk of their own) or near its end.
const value = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 400_000, max: 1_200_000 }) }.arbitrary.map((n) =>
    new Uint8Array(n).fill(n & 0xff)
  ),
);

Deno.test("snapshot writer: the chunked writer writes the format byte for byte, and it reads back", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: 2 ** 40 }),
      fc.array(fc.tuple(userKey, value), { maxLength: 12 }),
      fc.boolean(),
      async (applied, records, paced) => {
        const w = new SnapshotWriter(applied);
        for (const [k, v] of records) w.add(k, v);
        const want = reference(applied, records);
        assert.equal(w.size, want.length - 5, "size before the end tag and checksum");
        const got = paced ? await w.finishPaced(new Pacer(0)) : w.finish();
        assert.deepEqual(got, want);
        const back = paced ? await readSnapshotPaced(got, new Pacer(0)) : readSnapshot(got);
        assert.equal(back.appliedIndex, applied);
        assert.deepEqual([...back.records()], records);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("snapshot reader: a flipped byte anywhere fails the (paced) checksum", async () => {
  const w = new SnapshotWriter(9);
  for (let i = 0; i < 3000; i++) w.add(Uint8Array.of(1, i >> 8, i & 0xff), new Uint8Array(900));
  const data = w.finish();
  assert.ok(data.length > 2 << 20, "more than two 1 MiB slices");
  for (const at of [20, 1 << 20, data.length - 10]) {
    const bad = data.slice();
    bad[at] ^= 1;
    await assert.rejects(readSnapshotPaced(bad, new Pacer(0)), /checksum mismatch/);
    assert.throws(() => readSnapshot(bad), /checksum mismatch/);
  }
  const pacer = new Pacer(0);
  assert.equal((await readSnapshotPaced(data, pacer)).appliedIndex, 9);
  assert.ok(pacer.yields >= 2, "it yielded between slices");
});
