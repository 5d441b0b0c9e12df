import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Command,
  CommandOp,
  decodeCommand,
  deleteCommand,
  encodeCommand,
  putCommand,
} from "./command.ts";
import { DecodeError } from "./errors.ts";

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
