import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import {
  decodeRecordAt,
  type LogRecord,
  RecordType,
  scanSegment,
  SEGMENT_MAGIC,
  writeEntryRecord,
  writeHardStateRecord,
  writeHeaderRecord,
  writeSnapshotRecord,
} from "./segment_format.ts";

// deno-lint-ignore no-explicit-any
const rec = (m: any) => fc.record(m, { noNullPrototype: true }) as fc.Arbitrary<any>;

const u = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const ids = fc.array(fc.integer({ min: 1, max: 1 << 30 }), { maxLength: 5 });
const conf = rec({ voters: ids, votersOutgoing: ids, learners: ids, learnersNext: ids });
const meta = rec({ index: u, term: u, conf });
const hs = rec({ term: u, vote: u, commit: u });
const record: fc.Arbitrary<LogRecord> = fc.oneof(
  rec({
    type: fc.constant(RecordType.Entry as const),
    entry: rec({
      index: u,
      term: u,
      type: fc.constantFrom(0, 1),
      data: fc.uint8Array({ maxLength: 200 }),
    }),
  }),
  rec({ type: fc.constant(RecordType.HardState as const), hs }),
  rec({ type: fc.constant(RecordType.Snapshot as const), meta, keep: fc.boolean() }),
  rec({ type: fc.constant(RecordType.Header as const), meta, hs }),
);

function encode(records: LogRecord[]): { buf: Uint8Array; offsets: number[] } {
  const w = new ByteWriter();
  w.raw(SEGMENT_MAGIC);
  const offsets: number[] = [];
  for (const r of records) {
    offsets.push(w.length);
    if (r.type === RecordType.Entry) writeEntryRecord(w, r.entry);
    else if (r.type === RecordType.HardState) writeHardStateRecord(w, r.hs);
    else if (r.type === RecordType.Snapshot) writeSnapshotRecord(w, r.meta, r.keep);
    else writeHeaderRecord(w, r.meta, r.hs);
  }
  offsets.push(w.length);
  return { buf: w.finish(), offsets };
}

Deno.test("crc32c matches the standard check value", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  const data = new TextEncoder().encode("hello, segmented world");
  assert.equal(crc32c(data.subarray(7), crc32c(data.subarray(0, 7))), crc32c(data));
});

Deno.test("segment records survive an encode/decode round trip", () => {
  fc.assert(fc.property(fc.array(record, { maxLength: 20 }), (records) => {
    const { buf } = encode(records);
    const scan = scanSegment(buf);
    assert.equal(scan.error, undefined);
    assert.deepEqual(scan.records, records);
    assert.equal(scan.validEnd, buf.length);
  }));
});

Deno.test("a cut anywhere in a segment reads back as a prefix with a torn tail", () => {
  fc.assert(
    fc.property(fc.array(record, { minLength: 1, maxLength: 8 }), fc.nat(), (records, at) => {
      const { buf, offsets } = encode(records);
      const cut = SEGMENT_MAGIC.length + (at % (buf.length - SEGMENT_MAGIC.length));
      const scan = scanSegment(buf.subarray(0, cut));
      const whole = offsets.filter((o) => o <= cut).length - 1;
      assert.deepEqual(scan.records, records.slice(0, whole));
      assert.equal(scan.validEnd, offsets[whole]);
      if (cut !== offsets[whole]) assert.equal(scan.error?.validAfter, false);
    }),
    { numRuns: 500 },
  );
});

Deno.test("a damaged record before the tail is reported as corruption, not cut off", () => {
  fc.assert(
    fc.property(
      fc.array(record, { minLength: 1, maxLength: 8 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (records, at, flip) => {
        const { buf, offsets } = encode(records);
        const pos = SEGMENT_MAGIC.length + (at % (buf.length - SEGMENT_MAGIC.length));
        const bad = buf.slice();
        bad[pos] ^= flip;
        const k = offsets.findIndex((o, i) => o <= pos && pos < offsets[i + 1]);
        const scan = scanSegment(bad);
        // Everything before the damaged record is intact; nothing after it is trusted.
        assert.deepEqual(scan.records, records.slice(0, k));
        assert.ok(scan.error, "damage must be detected");
        assert.equal(scan.error.offset, offsets[k]);
        assert.equal(scan.error.validAfter, k < records.length - 1);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("the record decoder never throws on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat(400), (junk, off) => {
      const d = decodeRecordAt(junk, off);
      assert.ok(["ok", "bad", "eof"].includes(d.status));
      const withMagic = new Uint8Array(SEGMENT_MAGIC.length + junk.length);
      withMagic.set(SEGMENT_MAGIC);
      withMagic.set(junk, SEGMENT_MAGIC.length);
      scanSegment(withMagic);
      scanSegment(junk);
    }),
    { numRuns: 2000 },
  );
});
