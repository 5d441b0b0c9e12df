/**
 * Sums of V8-serialized numbers and bigints (Deno KV's M_SUM on VE_V8 values, kv_model.ts
 * applyV8Sum) on every backend: number + number, bigint + bigint, absent keys, bounds with and
 * without clamp, type mismatches (denokv's messages, the whole operation aborts), the u64
 * compatibility rule, the command codec and the session's cached result.
 */
import assert from "node:assert/strict";
import { deserialize, serialize } from "node:v8";
import {
  atomicCommand,
  type AtomicMutation,
  decodeCommand,
  encodeCommand,
  type KvStateMachine,
  putCommand,
  registerSessionCommand,
  SUM_RANGE_MESSAGE,
  u64le,
  V8_SUM_MESSAGES,
  v8SumMismatchMessage,
  v8SumParameterProblem,
  ValueEncoding,
} from "./mod.ts";
import { readU64le } from "./kv_model.ts";
import { KINDS, withSm } from "./testdata/with_sm.ts";

const b = (s: string) => new TextEncoder().encode(s);
const v8 = (x: unknown) => new Uint8Array(serialize(x));

const vsum = (
  key: string,
  n: number | bigint,
  o: { min?: unknown; max?: unknown; clamp?: boolean } = {},
): AtomicMutation => ({
  type: "sum",
  key: b(key),
  value: v8(n),
  encoding: ValueEncoding.V8,
  ...(o.min !== undefined ? { min: v8(o.min) } : {}),
  ...(o.max !== undefined ? { max: v8(o.max) } : {}),
  ...(o.clamp ? { clamp: true } : {}),
});

type Result = { ok: boolean; error?: string; message?: string };

let index = 0;
async function run(sm: KvStateMachine, mutations: AtomicMutation[]): Promise<Result> {
  const data = encodeCommand(atomicCommand([], mutations));
  return (await sm.apply([{ index: ++index, data }]))[0] as Result;
}

async function valueOf(sm: KvStateMachine, key: string): Promise<unknown> {
  const e = (await sm.getEntries([b(key)]))[0];
  if (!e) return undefined;
  if (e.encoding === ValueEncoding.LE64) return { u64: readU64le(e.value) };
  assert.equal(e.encoding, ValueEncoding.V8);
  return deserialize(e.value);
}

Deno.test("a V8 sum round-trips through the command codec with its bounds and clamp", () => {
  const cmd = atomicCommand([], [
    vsum("a", 1.5, { min: 0, max: 10, clamp: true }),
    vsum("b", 5n),
    vsum("c", -2, { max: 3 }),
    { type: "sum", key: b("u"), value: u64le(7n) },
  ]);
  assert.deepEqual(decodeCommand(encodeCommand(cmd)), cmd);
});

Deno.test("V8 sum parameters: the operand and bounds are numbers or bigints of one type", () => {
  assert.equal(v8SumParameterProblem(v8(1), v8(0), v8(5)), undefined);
  assert.equal(v8SumParameterProblem(v8(1n), undefined, v8(5n)), undefined);
  assert.equal(v8SumParameterProblem(v8("x"), undefined, undefined), V8_SUM_MESSAGES.badParameters);
  assert.equal(
    v8SumParameterProblem(new Uint8Array(), undefined, undefined),
    V8_SUM_MESSAGES.badParameters,
  );
  assert.equal(
    v8SumParameterProblem(new Uint8Array([1, 2]), undefined, undefined),
    V8_SUM_MESSAGES.badParameters,
  );
  assert.equal(v8SumParameterProblem(v8(1), v8({}), undefined), V8_SUM_MESSAGES.badParameters);
  assert.equal(v8SumParameterProblem(v8(1), v8(0n), undefined), V8_SUM_MESSAGES.boundTypes);
  assert.equal(v8SumParameterProblem(v8(1n), undefined, v8(2)), V8_SUM_MESSAGES.boundTypes);
});

for (const kind of KINDS) {
  Deno.test(`${kind}: V8 sums add numbers and bigints; an absent key takes the operand`, async () => {
    await withSm(kind, async (sm) => {
      assert.ok((await run(sm, [vsum("n", 1)])).ok);
      assert.equal(await valueOf(sm, "n"), 1);
      assert.ok((await run(sm, [vsum("n", 2.5), vsum("n", -0.5)])).ok);
      assert.equal(await valueOf(sm, "n"), 3);
      assert.ok((await run(sm, [vsum("g", 1n << 70n)])).ok);
      assert.ok((await run(sm, [vsum("g", -1n)])).ok);
      assert.equal(await valueOf(sm, "g"), (1n << 70n) - 1n, "bigints do not wrap");
      // A value Deno's client stored (set of a number) sums too.
      assert.ok((await run(sm, [{ type: "set", key: b("s"), value: v8(40), encoding: 1 }])).ok);
      assert.ok((await run(sm, [vsum("s", 2)])).ok);
      assert.equal(await valueOf(sm, "s"), 42);
    });
  });

  Deno.test(`${kind}: bounded V8 sums clamp, or without clamp abort the whole operation`, async () => {
    await withSm(kind, async (sm) => {
      await run(sm, [vsum("c", 8)]);
      assert.ok((await run(sm, [vsum("c", 5, { max: 10, clamp: true })])).ok);
      assert.equal(await valueOf(sm, "c"), 10);
      assert.ok((await run(sm, [vsum("c", -50, { min: -3, clamp: true })])).ok);
      assert.equal(await valueOf(sm, "c"), -3);
      const r = await run(sm, [
        { type: "set", key: b("other"), value: b("x"), encoding: 3 },
        vsum("c", -1, { min: -3 }),
      ]);
      assert.deepEqual([r.ok, r.error, r.message], [false, "value_type", SUM_RANGE_MESSAGE]);
      assert.equal(await valueOf(sm, "other"), undefined, "nothing of a failed operation applies");
      assert.equal(await valueOf(sm, "c"), -3);
      // In range: applied as is.
      assert.ok((await run(sm, [vsum("c", 4, { min: -3, max: 10 })])).ok);
      assert.equal(await valueOf(sm, "c"), 1);
      // Bigints.
      await run(sm, [vsum("g", 5n)]);
      const over = await run(sm, [vsum("g", 10n, { max: 12n })]);
      assert.equal(over.message, SUM_RANGE_MESSAGE);
      assert.equal(await valueOf(sm, "g"), 5n);
      assert.ok((await run(sm, [vsum("g", 10n, { max: 12n, clamp: true })])).ok);
      assert.equal(await valueOf(sm, "g"), 12n);
      // An absent key takes the operand, bounds or not (as denokv).
      assert.ok((await run(sm, [vsum("fresh", 100, { max: 10 })])).ok);
      assert.equal(await valueOf(sm, "fresh"), 100);
    });
  });

  Deno.test(`${kind}: a V8 sum on another type aborts the whole operation with denokv's message`, async () => {
    await withSm(kind, async (sm) => {
      await run(sm, [vsum("n", 1), vsum("g", 1n)]);
      await run(sm, [{ type: "set", key: b("t"), value: v8("text"), encoding: 1 }]);
      await run(sm, [{ type: "set", key: b("raw"), value: b("xy"), encoding: 3 }]);
      await run(sm, [{ type: "set", key: b("junk"), value: b("xy"), encoding: 1 }]);
      const cases: [AtomicMutation, string][] = [
        [vsum("n", 1n), v8SumMismatchMessage("Number", "BigInt")],
        [vsum("g", 1), v8SumMismatchMessage("BigInt", "Number")],
        [vsum("t", 1), V8_SUM_MESSAGES.unsupported],
        [vsum("raw", 1), V8_SUM_MESSAGES.unsupported],
        [vsum("junk", 1), V8_SUM_MESSAGES.invalidV8],
        [{ ...vsum("n", 1), min: v8(0n) } as AtomicMutation, V8_SUM_MESSAGES.boundTypes],
        [{ ...vsum("n", 1), value: v8("x") } as AtomicMutation, V8_SUM_MESSAGES.badParameters],
      ];
      for (const [m, message] of cases) {
        const r = await run(sm, [vsum("first", 1), m]);
        assert.deepEqual([r.ok, r.error, r.message], [false, "value_type", message]);
        assert.equal(await valueOf(sm, "first"), undefined, `${message}: nothing applied`);
      }
      // A key set earlier in the same operation counts.
      const r = await run(sm, [
        { type: "set", key: b("k"), value: v8(1n), encoding: 1 },
        vsum("k", 1),
      ]);
      assert.equal(r.message, v8SumMismatchMessage("BigInt", "Number"));
      assert.equal(await valueOf(sm, "n"), 1);
      assert.equal(await valueOf(sm, "g"), 1n);
    });
  });

  Deno.test(`${kind}: a V8 bigint sum on a stored u64 adds as a u64 (denokv's compatibility)`, async () => {
    await withSm(kind, async (sm) => {
      await run(sm, [{ type: "sum", key: b("u"), value: u64le((1n << 64n) - 1n) }]);
      assert.ok((await run(sm, [vsum("u", 3n)])).ok);
      assert.deepEqual(await valueOf(sm, "u"), { u64: 2n }, "wraps like a u64 sum");
      // With bounds, or a number, or out of the u64 range: a type mismatch.
      assert.equal(
        (await run(sm, [vsum("u", 3n, { max: 10n })])).message,
        v8SumMismatchMessage("KvU64", "BigInt"),
      );
      assert.equal(
        (await run(sm, [vsum("u", 3)])).message,
        v8SumMismatchMessage("KvU64", "Number"),
      );
      assert.equal(
        (await run(sm, [vsum("u", -1n)])).message,
        v8SumMismatchMessage("KvU64", "BigInt"),
      );
      assert.deepEqual(await valueOf(sm, "u"), { u64: 2n });
    });
  });

  Deno.test(`${kind}: a session retry of a failed V8 sum answers its message again`, async () => {
    await withSm(kind, async (sm) => {
      await sm.apply([{ index: 1, data: encodeCommand(registerSessionCommand(60_000, 10, 1)) }]);
      await sm.apply([{ index: 2, data: encodeCommand(putCommand(b("k"), b("bytes"))) }]);
      await run(sm, [vsum("n", 1)]);
      const cmd = encodeCommand(
        atomicCommand([], [vsum("n", 1n)], { clientId: 1n, seq: 1 }, 3),
      );
      const first = (await sm.apply([{ index: 100, data: cmd }]))[0] as Result;
      assert.equal(first.message, v8SumMismatchMessage("Number", "BigInt"));
      const again = (await sm.apply([{ index: 101, data: cmd }]))[0] as Result;
      assert.deepEqual(again, first);
      assert.equal(await valueOf(sm, "n"), 1);
    });
  });
}
