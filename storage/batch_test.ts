/**
 * Batch entries (storage/command.ts encodeBatch): many client commands in one Raft entry, run
 * against every backend. Command j of the entry at index i is applied as if alone at versionstamp
 * (i, j): its own session, its own result, refused on its own.
 */
import assert from "node:assert/strict";
import {
  type ApplyResult,
  atomicCommand,
  decodeBatch,
  deleteCommand,
  encodeBatch,
  encodeCommand,
  expirySweepCommand,
  isBatch,
  type KvStateMachine,
  makeVersionstamp,
  putCommand,
  registerSessionCommand,
  ValueEncoding,
} from "./mod.ts";
import { DecodeError } from "./errors.ts";
import { KINDS, withSm } from "./testdata/with_sm.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);
const hex = (v: Uint8Array | undefined) => v ? [...v].map((x) => x.toString(16)).join(",") : "";

async function applyOne(sm: KvStateMachine, index: number, data: Uint8Array): Promise<unknown> {
  const [r] = await sm.apply([{ index, data }]);
  return r;
}

Deno.test("batch codec: parts round-trip as views; malformed framing is a DecodeError", () => {
  const parts = [
    encodeCommand(putCommand(b("a"), b("1"))),
    encodeCommand(deleteCommand(b("b"))),
    encodeCommand(putCommand(b(""), new Uint8Array(300))),
  ];
  const data = encodeBatch(parts);
  assert.ok(isBatch(data));
  assert.ok(!isBatch(parts[0]));
  assert.deepEqual(decodeBatch(data), parts);
  const bad = [
    data.subarray(0, data.length - 1), // truncated
    new Uint8Array([...data, 0]), // trailing byte
    encodeBatch([parts[0], parts[1]]).map((x, i) => i === 1 ? 1 : x), // unknown flags
    new Uint8Array([7, 0, 1, 1, 0]), // one command: not a batch
    new Uint8Array([7, 0, 0x80, 0x80, 0x04]), // 65,536 commands claimed
  ];
  for (const d of bad) assert.throws(() => decodeBatch(d), DecodeError);
});

for (const kind of KINDS) {
  Deno.test(`${kind}: a batch entry applies its commands in order at (index, position), each with its own session and result`, async () => {
    await withSm(kind, async (sm) => {
      assert.deepEqual(
        await applyOne(sm, 1, encodeCommand(registerSessionCommand(60_000, 100, 1_000))),
        { ok: true, sessionId: 1n },
      );
      const s = (seq: number) => ({ clientId: 1n, seq });
      const put1 = encodeCommand(putCommand(b("k"), b("v1"), s(1), 1_001));
      const r = await applyOne(
        sm,
        2,
        encodeBatch([
          put1,
          put1, // seq 1 again, same command: its cached result
          encodeCommand(putCommand(b("j"), b("x"), undefined, 1_001)),
          // Sees the put at (2, 0) of this same entry.
          encodeCommand(atomicCommand(
            [{ key: b("k"), versionstamp: makeVersionstamp(2, 0) }],
            [{ type: "set", key: b("k"), value: b("v2"), encoding: ValueEncoding.BYTES }],
            s(2),
            1_002,
          )),
          encodeCommand(atomicCommand([{ key: b("k"), versionstamp: null }], [], s(3), 1_002)),
          encodeCommand(putCommand(b("k"), b("other"), s(3), 1_003)), // seq 3, different
          encodeCommand(registerSessionCommand(60_000, 100, 1_003)), // not in a batch
          encodeCommand(expirySweepCommand(10, 1_003)), // not in a batch
          new Uint8Array([1, 0, 5]), // unreadable: refused alone
          encodeCommand(deleteCommand(b("j"), s(4), 1_004)),
        ]),
      ) as ApplyResult[];
      assert.ok(Array.isArray(r), "one result per command");
      assert.equal(r.length, 10);
      const vs = (i: number) => (r[i] as { versionstamp?: Uint8Array }).versionstamp;
      const codes = r.map((x) => x && x.ok === false ? x.error : "ok");
      assert.deepEqual(codes, [
        "ok",
        "ok",
        "ok",
        "ok",
        "check_failed",
        "session_seq",
        "bad_command",
        "bad_command",
        "bad_command",
        "ok",
      ]);
      assert.equal(hex(vs(0)), hex(makeVersionstamp(2, 0)));
      assert.equal(hex(vs(1)), hex(makeVersionstamp(2, 0)), "a retry answers the first result");
      assert.equal(hex(vs(2)), hex(makeVersionstamp(2, 2)));
      assert.equal(hex(vs(3)), hex(makeVersionstamp(2, 3)));
      assert.deepEqual((r[4] as { failedChecks?: number[] }).failedChecks, [0]);
      assert.equal(hex(vs(9)), hex(makeVersionstamp(2, 9)));
      assert.equal(dec.decode((await sm.get(b("k")))!), "v2");
      assert.equal(await sm.get(b("j")), undefined);
      const [e] = await sm.getEntries([b("k")]);
      assert.equal(hex(e?.versionstamp), hex(makeVersionstamp(2, 3)));
      assert.equal((await sm.session(1n))?.lastSeq, 4);
      assert.equal(sm.clock(), 1_004);
      assert.equal(sm.appliedIndex(), 2);
      // A retry of a batched write, alone in a later entry, answers its (index, position).
      const del4 = encodeCommand(deleteCommand(b("j"), s(4), 1_004));
      const again = await applyOne(sm, 3, del4) as { versionstamp: Uint8Array };
      assert.equal(hex(again.versionstamp), hex(makeVersionstamp(2, 9)));
      // A batch whose framing is unreadable is refused as a whole: nothing of it applies.
      const broken = encodeBatch([encodeCommand(putCommand(b("z"), b("1"))), put1]).subarray(0, 9);
      assert.equal((await applyOne(sm, 4, broken) as { error: string }).error, "bad_command");
      assert.equal(await sm.get(b("z")), undefined);
      assert.equal(sm.appliedIndex(), 4);
    });
  });
}
