import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Command,
  CommandOp,
  decodeCommand,
  decodeCommandWithHash,
  deleteCommand,
  encodeCommand,
  putCommand,
} from "./command.ts";
import { DecodeError } from "./errors.ts";
import { crc32c } from "./crc32c.ts";
import { ByteWriter } from "./bytes.ts";

// deno-lint-ignore no-explicit-any
const rec = (m: any) => fc.record(m, { noNullPrototype: true }) as fc.Arbitrary<any>;

const session = fc.option(
  rec({
    clientId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    seq: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  }),
  { nil: undefined },
);
const bytes = fc.uint8Array({ maxLength: 300 });
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.tuple(bytes, bytes, session).map(([k, v, s]) => putCommand(k, v, s)),
  fc.tuple(bytes, session).map(([k, s]) => deleteCommand(k, s)),
);

Deno.test("commands survive an encode/decode round trip", () => {
  fc.assert(
    fc.property(command, (cmd) => assert.deepEqual(decodeCommand(encodeCommand(cmd)), cmd)),
  );
});

Deno.test("a put with a session has the documented wire layout", () => {
  const data = encodeCommand(
    putCommand(new Uint8Array([0x6b]), new Uint8Array([0x76, 0x77]), {
      clientId: 0x0102n,
      seq: 300,
    }),
  );
  assert.deepEqual(
    [...data],
    [CommandOp.Put, 1, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0xac, 0x02, 1, 0x6b, 2, 0x76, 0x77],
  );
});

Deno.test("malformed commands are rejected with DecodeError", () => {
  const good = encodeCommand(deleteCommand(new Uint8Array([1, 2, 3]), { clientId: 9n, seq: 1 }));
  for (let cut = 0; cut < good.length; cut++) {
    assert.throws(() => decodeCommand(good.subarray(0, cut)), DecodeError);
  }
  assert.throws(() => decodeCommand(new Uint8Array([...good, 0])), DecodeError);
  assert.throws(() => decodeCommand(new Uint8Array([7, 0, 0])), DecodeError);
  assert.throws(() => decodeCommand(new Uint8Array([1, 4, 0, 0])), DecodeError);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (junk) => {
    try {
      decodeCommand(junk);
    } catch (e) {
      assert.ok(e instanceof DecodeError);
    }
  }));
});

/** The hash decodeCommandWithHash must give, computed apart: CRC-32C of the op byte and the body
 * (what follows the flags, the session and the time). */
function referenceHash(data: Uint8Array): number {
  let at = 2;
  if (data[1] & 1) {
    at += 8;
    while (data[at] >= 0x80) at++;
    at++;
  }
  if (data[1] & 2) at += 8;
  return crc32c(data, crc32c(data, 0, 0, 1), at, data.length);
}

/** What decoding gives: the command and hash, or the error's message. */
function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return { error: e.message };
  }
}

Deno.test("property: the apply path's Put decoder gives decodeCommand's command, the body hash and the same refusals (valid, mutated and cut bytes)", () => {
  const time = fc.option(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { nil: undefined });
  const put = fc.tuple(bytes, bytes, session, time).map(([k, v, s, t]) => putCommand(k, v, s, t));
  const edit = fc.record({
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
    cut: fc.nat(),
    kind: fc.integer({ min: 0, max: 3 }),
  });
  fc.assert(
    fc.property(fc.oneof(put, command), edit, (cmd, e) => {
      let data = encodeCommand(cmd);
      // 0: as encoded; 1: one byte changed; 2: cut short; 3: a byte appended.
      if (e.kind === 1 && data.length > 0) data[e.at % data.length] = e.byte;
      if (e.kind === 2) data = data.subarray(0, e.cut % (data.length + 1));
      if (e.kind === 3) data = Uint8Array.of(...data, e.byte);
      const want = outcome(() => ({ cmd: decodeCommand(data), hash: referenceHash(data) }));
      const got = outcome(() => decodeCommandWithHash(data));
      assert.deepEqual(got, want);
    }),
    { numRuns: 3000 },
  );
});

/** The Put/Delete encoder before encodeCommand wrote them by hand (command.ts at 49ea605). */
function referenceEncode(cmd: Command): Uint8Array {
  const w = new ByteWriter(64);
  w.u8(cmd.op);
  w.u8((cmd.session ? 1 : 0) | (cmd.time !== undefined ? 2 : 0));
  if (cmd.session) {
    w.big64(cmd.session.clientId);
    w.uvarint(cmd.session.seq);
  }
  if (cmd.time !== undefined) w.u64(cmd.time);
  if (cmd.op !== CommandOp.Put && cmd.op !== CommandOp.Delete) throw new Error("not plain");
  w.bytes(cmd.key);
  if (cmd.op === CommandOp.Put) w.bytes(cmd.value);
  return w.finish();
}

Deno.test("property: encodeCommand writes a Put or Delete as the ByteWriter encoder did, each in its own bytes", () => {
  const time = fc.option(fc.oneof(fc.nat(1000), fc.maxSafeNat()), { nil: undefined });
  const plain = fc.tuple(fc.boolean(), bytes, fc.uint8Array({ maxLength: 5000 }), session, time)
    .map(([put, k, v, s, t]) => put ? putCommand(k, v, s, t) : deleteCommand(k, s, t));
  fc.assert(
    fc.property(fc.array(plain, { minLength: 1, maxLength: 8 }), (cmds) => {
      const encoded = cmds.map((c) => encodeCommand(c));
      for (let i = 0; i < cmds.length; i++) {
        assert.deepEqual(encoded[i], referenceEncode(cmds[i]));
        assert.deepEqual(decodeCommand(encoded[i]), cmds[i]);
      }
      // Views of one chunk never overlap: writing one changes no other.
      const copies = encoded.map((e) => e.slice());
      for (const e of encoded) e.fill(0xee);
      for (let i = encoded.length - 1; i >= 0; i--) encoded[i].set(copies[i]);
      for (let i = 0; i < encoded.length; i++) {
        assert.deepEqual(decodeCommand(encoded[i]), cmds[i]);
      }
    }),
    { numRuns: 2000 },
  );
  assert.throws(
    () =>
      encodeCommand(putCommand(new Uint8Array(1), new Uint8Array(1), { clientId: 1n, seq: -1 })),
    RangeError,
  );
  assert.throws(() => encodeCommand(deleteCommand(new Uint8Array(1), undefined, 1.5)), RangeError);
});
