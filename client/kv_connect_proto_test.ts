import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import protobuf from "protobufjs";
import { KV_CONNECT_PROTO_JSON } from "./kv_connect_proto.ts";
import {
  type AtomicWrite,
  AtomicWriteStatus,
  decodeAtomicWrite,
  decodeAtomicWriteOutput,
  decodeSnapshotRead,
  decodeSnapshotReadOutput,
  decodeWatch,
  decodeWatchOutput,
  encodeAtomicWrite,
  encodeAtomicWriteOutput,
  encodeSnapshotRead,
  encodeSnapshotReadOutput,
  encodeWatch,
  encodeWatchOutput,
  KvConnectDecodeError,
  MutationType,
  type SnapshotReadOutput,
  SnapshotReadStatus,
  ValueEncoding,
  watchFrame,
} from "./kv_connect_codec.ts";

const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((h) => parseInt(h, 16)));

Deno.test("the embedded descriptor is the one protobufjs builds from kv_connect.proto", () => {
  const path = fileURLToPath(new URL("./kv_connect.proto", import.meta.url));
  assert.deepEqual(protobuf.loadSync(path).toJSON(), KV_CONNECT_PROTO_JSON);
});

Deno.test("decodes the atomic_write bytes Deno 2.9.6 sends for set(['a'], 1.5)", () => {
  // Captured from `Deno.openKv(url)` + `kv.set(["a"], 1.5)` against a recording server.
  const m = decodeAtomicWrite(hex("12180a03026100120f0a0bff104e000000000000f83f10011801"));
  assert.equal(m.checks.length, 0);
  assert.equal(m.enqueues.length, 0);
  assert.equal(m.mutations.length, 1);
  const mu = m.mutations[0];
  assert.deepEqual(mu.key, new Uint8Array([0x02, 0x61, 0x00])); // the tuple ["a"]
  assert.equal(mu.mutationType, MutationType.Set);
  assert.equal(mu.value?.encoding, ValueEncoding.V8);
  assert.deepEqual(mu.value?.data, hex("ff104e000000000000f83f"));
  assert.equal(mu.expireAtMs, 0);
  assert.equal(mu.sumClamp, false);
  assert.deepEqual(mu.sumMin, new Uint8Array());
});

Deno.test("field numbers on the wire: read_is_strongly_consistent is field 4, status field 8", () => {
  const b = encodeSnapshotReadOutput({
    ranges: [],
    readDisabled: false,
    readIsStronglyConsistent: true,
    status: SnapshotReadStatus.Success,
  });
  // tag (4 << 3 | 0) = 0x20 value 1; tag (8 << 3 | 0) = 0x40 value 1.
  assert.deepEqual(b, new Uint8Array([0x20, 0x01, 0x40, 0x01]));
  const w = encodeAtomicWriteOutput({
    status: AtomicWriteStatus.CheckFailure,
    versionstamp: new Uint8Array(),
    failedChecks: [0, 3],
  });
  // status = 2 (field 1), failed_checks packed (field 4, wire type 2).
  assert.deepEqual(w, new Uint8Array([0x08, 0x02, 0x22, 0x02, 0x00, 0x03]));
});

/** fast-check builds null-prototype records; compare against plain copies. */
const norm = <T>(x: T): T => structuredClone(x);
const bytes = (max = 40) => fc.uint8Array({ maxLength: max });
const entry = fc.record({
  key: bytes(),
  value: bytes(),
  encoding: fc.constantFrom(1, 2, 3),
  versionstamp: fc.uint8Array({ minLength: 10, maxLength: 10 }),
});

Deno.test("property: every message round-trips through encode/decode", () => {
  fc.assert(fc.property(
    fc.array(
      fc.record({
        start: bytes(),
        end: bytes(),
        limit: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        reverse: fc.boolean(),
      }),
      { maxLength: 5 },
    ),
    (ranges) =>
      assert.deepEqual(decodeSnapshotRead(encodeSnapshotRead({ ranges })), norm({ ranges })),
  ));
  fc.assert(fc.property(
    fc.record({
      ranges: fc.array(fc.record({ values: fc.array(entry, { maxLength: 4 }) }), { maxLength: 3 }),
      readDisabled: fc.boolean(),
      readIsStronglyConsistent: fc.boolean(),
      status: fc.constantFrom(0, 1, 2),
    }),
    (m: SnapshotReadOutput) =>
      assert.deepEqual(decodeSnapshotReadOutput(encodeSnapshotReadOutput(m)), norm(m)),
  ));
  fc.assert(fc.property(
    fc.record({
      checks: fc.array(fc.record({ key: bytes(), versionstamp: bytes(10) }), { maxLength: 4 }),
      mutations: fc.array(
        fc.record({
          key: bytes(),
          value: fc.record({ data: bytes(), encoding: fc.constantFrom(0, 1, 2, 3) }),
          mutationType: fc.constantFrom(0, 1, 2, 3, 4, 5, 9),
          expireAtMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
          sumMin: bytes(),
          sumMax: bytes(),
          sumClamp: fc.boolean(),
        }),
        { maxLength: 4 },
      ),
      enqueues: fc.array(
        fc.record({
          payload: bytes(),
          deadlineMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
          keysIfUndelivered: fc.array(bytes(), { maxLength: 3 }),
          backoffSchedule: fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 3 }),
        }),
        { maxLength: 2 },
      ),
    }),
    (m: AtomicWrite) => assert.deepEqual(decodeAtomicWrite(encodeAtomicWrite(m)), norm(m)),
  ));
  fc.assert(fc.property(
    fc.record({
      status: fc.constantFrom(0, 1, 2, 5),
      versionstamp: bytes(10),
      failedChecks: fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 10 }),
    }),
    (m) => assert.deepEqual(decodeAtomicWriteOutput(encodeAtomicWriteOutput(m)), norm(m)),
  ));
  fc.assert(fc.property(
    fc.array(fc.record({ key: bytes() }), { maxLength: 10 }),
    (keys) => assert.deepEqual(decodeWatch(encodeWatch({ keys })), norm({ keys })),
  ));
  fc.assert(fc.property(
    fc.record({
      status: fc.constantFrom(0, 1, 2),
      keys: fc.array(
        fc.oneof(
          fc.record({ changed: fc.boolean() }),
          fc.record({ changed: fc.constant(true), entryIfChanged: entry }),
        ),
        { maxLength: 5 },
      ),
    }),
    (m) => assert.deepEqual(decodeWatchOutput(encodeWatchOutput(m)), norm(m)),
  ));
});

Deno.test("malformed bytes are a KvConnectDecodeError naming the message type", () => {
  // A length-delimited field (ranges, tag 0x0a) that claims 100 bytes where 1 follows.
  const e = assert.throws(
    () => decodeSnapshotRead(new Uint8Array([0x0a, 100, 1])),
    KvConnectDecodeError,
  );
  void e;
  assert.throws(() => decodeAtomicWrite(new Uint8Array([0xff])), /invalid AtomicWrite protobuf/);
});

Deno.test("a watch frame is the u32 little-endian length, then the message", () => {
  const msg = encodeWatchOutput({ status: SnapshotReadStatus.Success, keys: [{ changed: false }] });
  const f = watchFrame(msg);
  assert.equal(new DataView(f.buffer).getUint32(0, true), msg.length);
  assert.deepEqual(f.subarray(4), msg);
  assert.deepEqual(watchFrame(new Uint8Array()), new Uint8Array(4));
});
