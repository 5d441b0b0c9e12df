/**
 * The data model (kv_model.ts) on every backend: versionstamps, encodings, atomic checks and
 * mutations, expiry, cached results of sessions, snapshots, export/import and reopen.
 */
import { DecodeError } from "./errors.ts";
import assert from "node:assert/strict";
import {
  type AtomicCheck,
  atomicCommand,
  type AtomicMutation,
  decodeCommand,
  deleteCommand,
  encodeCommand,
  expirySweepCommand,
  type KvChange,
  type KvStateMachine,
  makeVersionstamp,
  nonU64ValueMessage,
  openStorage,
  putCommand,
  registerSessionCommand,
  type StateEntry,
  suffixVersionstampedKey,
  SUM_RANGE_MESSAGE,
  u64le,
  ValueEncoding,
  versionstampHex,
} from "./mod.ts";
import { KINDS, withSm } from "./testdata/with_sm.ts";
import {
  decodeRecord,
  encodeRecord,
  parseVersionstamp,
  plainRecordValue,
  readU64le,
} from "./kv_model.ts";
import { LsmDb } from "../lsm/mod.ts";
import { userKey } from "./kv_core.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);

/** Applies one command at `index`; returns its result. */
async function one(sm: KvStateMachine, index: number, data: Uint8Array): Promise<unknown> {
  return (await sm.apply([{ index, data }]))[0];
}

function atomic(checks: AtomicCheck[], mutations: AtomicMutation[], time?: number): Uint8Array {
  return encodeCommand(atomicCommand(checks, mutations, undefined, time));
}

async function entry(sm: KvStateMachine, key: string) {
  return (await sm.getEntries([b(key)]))[0];
}

async function u64Of(sm: KvStateMachine, key: string): Promise<bigint | undefined> {
  const e = await entry(sm, key);
  if (!e) return undefined;
  assert.equal(e.encoding, ValueEncoding.LE64);
  return readU64le(e.value);
}

const sum = (key: string, n: bigint, o: { min?: bigint; max?: bigint; clamp?: boolean } = {}) =>
  ({
    type: "sum",
    key: b(key),
    value: u64le(n),
    ...(o.min !== undefined ? { min: u64le(o.min) } : {}),
    ...(o.max !== undefined ? { max: u64le(o.max) } : {}),
    ...(o.clamp ? { clamp: true } : {}),
  }) as AtomicMutation;

Deno.test("versionstamps: 10 bytes, index big-endian then position, 20 hex digits", () => {
  const vs = makeVersionstamp(0x0102030405, 7);
  assert.equal(versionstampHex(vs), "00000001020304050007");
  assert.deepEqual(parseVersionstamp("00000001020304050007"), vs);
  assert.throws(() => parseVersionstamp("xyz"), RangeError);
  assert.ok(versionstampHex(makeVersionstamp(9)) < versionstampHex(makeVersionstamp(10)));
});

Deno.test("records round-trip encoding, versionstamp, expiry and value", () => {
  for (const expireAt of [undefined, 1_700_000_000_123]) {
    const r = {
      encoding: ValueEncoding.V8,
      versionstamp: makeVersionstamp(5),
      value: b("hello"),
      ...(expireAt ? { expireAt } : {}),
    };
    assert.deepEqual({ ...decodeRecord(encodeRecord(r)) }, r);
    // The fast path of point reads: the value of a record without expiry, nothing otherwise.
    assert.deepEqual(plainRecordValue(encodeRecord(r)), expireAt ? undefined : r.value);
  }
  assert.deepEqual(
    plainRecordValue(encodeRecord({ ...rec0(), value: new Uint8Array(0) })),
    new Uint8Array(0),
  );
  assert.throws(() => decodeRecord(new Uint8Array([9, 0, 0])));
  assert.throws(() => plainRecordValue(new Uint8Array([9, 0, 0])), DecodeError);
  const bad = encodeRecord(rec0());
  bad[0] = 0x7f; // an unknown encoding, no expiry flag
  assert.throws(() => plainRecordValue(bad), DecodeError);
  assert.throws(() => decodeRecord(bad), DecodeError);
});

function rec0() {
  return { encoding: ValueEncoding.V8, versionstamp: makeVersionstamp(1), value: b("v") };
}

Deno.test("atomic commands round-trip through the codec; malformed ones are refused", () => {
  const cmd = atomicCommand(
    [{ key: b("a"), versionstamp: makeVersionstamp(3) }, { key: b("b"), versionstamp: null }],
    [
      { type: "set", key: b("a"), value: b("x"), encoding: ValueEncoding.V8, expireAt: 99 },
      { type: "delete", key: b("b") },
      sum("c", 5n, { min: 1n, max: 10n, clamp: true }),
      { type: "min", key: b("d"), value: u64le(2n) },
      { type: "max", key: b("d"), value: u64le(3n) },
      { type: "setSuffixVersionstampedKey", key: b("q/"), value: b("v"), encoding: 3 },
    ],
    { clientId: 4n, seq: 2 },
    1234,
  );
  const data = encodeCommand(cmd);
  assert.deepEqual(decodeCommand(data), cmd);
  assert.deepEqual(
    decodeCommand(encodeCommand(expirySweepCommand(10, 55))),
    expirySweepCommand(10, 55),
  );
  assert.throws(() => decodeCommand(data.subarray(0, data.length - 1)));
  assert.throws(() =>
    encodeCommand(atomicCommand([], [{ type: "min", key: b("k"), value: b("x") }]))
  );
  // An unknown mutation type.
  const bad = encodeCommand(atomicCommand([], [{ type: "delete", key: b("k") }]));
  bad[bad.length - 3] = 7;
  assert.throws(() => decodeCommand(bad));
});

for (const kind of KINDS) {
  Deno.test(`${kind}: every write gets the versionstamp of its log index; reads return entries`, async () => {
    await withSm(kind, async (sm) => {
      assert.deepEqual(await one(sm, 1, encodeCommand(putCommand(b("a"), b("1")))), {
        ok: true,
        versionstamp: makeVersionstamp(1),
      });
      await one(sm, 2, encodeCommand(putCommand(b("b"), b("2"))));
      await one(sm, 3, encodeCommand(putCommand(b("a"), b("3"))));
      const [a, bb, c] = await sm.getEntries([b("a"), b("b"), b("c")]);
      assert.deepEqual(a, {
        key: b("a"),
        value: b("3"),
        encoding: ValueEncoding.BYTES,
        versionstamp: makeVersionstamp(3),
      });
      assert.deepEqual(bb!.versionstamp, makeVersionstamp(2));
      assert.equal(c, null);
      assert.deepEqual(await one(sm, 4, encodeCommand(deleteCommand(b("b")))), {
        ok: true,
        versionstamp: makeVersionstamp(4),
      });
      assert.deepEqual((await sm.scanEntries()).map((e) => versionstampHex(e.versionstamp)), [
        versionstampHex(makeVersionstamp(3)),
      ]);
      // The plain read path still returns the value alone.
      assert.equal(dec.decode((await sm.get(b("a")))!), "3");
    });
  });

  Deno.test(`${kind}: checks compare versionstamps; a failed check applies nothing and names the checks`, async () => {
    await withSm(kind, async (sm) => {
      await one(sm, 1, encodeCommand(putCommand(b("a"), b("1"))));
      const ok = await one(
        sm,
        2,
        atomic(
          [{ key: b("a"), versionstamp: makeVersionstamp(1) }, { key: b("n"), versionstamp: null }],
          [
            { type: "set", key: b("a"), value: b("2"), encoding: ValueEncoding.V8 },
            { type: "set", key: b("n"), value: b("new"), encoding: ValueEncoding.BYTES },
          ],
        ),
      );
      assert.deepEqual(ok, { ok: true, versionstamp: makeVersionstamp(2) });
      const a = await entry(sm, "a");
      assert.equal(a!.encoding, ValueEncoding.V8);
      assert.deepEqual(a!.versionstamp, makeVersionstamp(2));
      assert.deepEqual((await entry(sm, "n"))!.versionstamp, makeVersionstamp(2));
      // Stale versionstamp (check 0) and "absent" on a present key (check 2) fail; check 1 passes.
      const failed = await one(
        sm,
        3,
        atomic(
          [
            { key: b("a"), versionstamp: makeVersionstamp(1) },
            { key: b("zz"), versionstamp: null },
            { key: b("n"), versionstamp: null },
          ],
          [{ type: "delete", key: b("a") }, {
            type: "set",
            key: b("x"),
            value: b("1"),
            encoding: 3,
          }],
        ),
      ) as { ok: boolean; error: string; failedChecks: number[] };
      assert.equal(failed.ok, false);
      assert.equal(failed.error, "check_failed");
      assert.deepEqual(failed.failedChecks, [0, 2]);
      assert.ok(await entry(sm, "a"));
      assert.equal(await entry(sm, "x"), null);
      // The applied index moved all the same.
      assert.equal(sm.appliedIndex(), 3);
    });
  });

  Deno.test(`${kind}: sum wraps, min and max compare, absent keys take the operand`, async () => {
    await withSm(kind, async (sm) => {
      let i = 1;
      await one(sm, i++, atomic([], [sum("c", 5n)]));
      assert.equal(await u64Of(sm, "c"), 5n);
      await one(sm, i++, atomic([], [sum("c", (1n << 64n) - 3n)]));
      assert.equal(await u64Of(sm, "c"), 2n, "sum wraps modulo 2^64");
      await one(sm, i++, atomic([], [{ type: "min", key: b("m"), value: u64le(7n) }]));
      await one(sm, i++, atomic([], [{ type: "min", key: b("m"), value: u64le(9n) }]));
      assert.equal(await u64Of(sm, "m"), 7n);
      await one(sm, i++, atomic([], [{ type: "min", key: b("m"), value: u64le(3n) }]));
      assert.equal(await u64Of(sm, "m"), 3n);
      await one(sm, i++, atomic([], [{ type: "max", key: b("m"), value: u64le(2n) }]));
      assert.equal(await u64Of(sm, "m"), 3n);
      await one(sm, i++, atomic([], [{ type: "max", key: b("m"), value: u64le(11n) }]));
      assert.equal(await u64Of(sm, "m"), 11n);
      // Mutations see the earlier ones of the same operation.
      await one(sm, i++, atomic([], [sum("s", 1n), sum("s", 1n), sum("s", 1n)]));
      assert.equal(await u64Of(sm, "s"), 3n);
    });
  });

  Deno.test(`${kind}: a bounded sum clamps or aborts the whole operation`, async () => {
    await withSm(kind, async (sm) => {
      await one(sm, 1, atomic([], [sum("c", 8n)]));
      await one(sm, 2, atomic([], [sum("c", 5n, { max: 10n, clamp: true })]));
      assert.equal(await u64Of(sm, "c"), 10n);
      const r = await one(
        sm,
        3,
        atomic([], [
          { type: "set", key: b("other"), value: b("x"), encoding: 3 },
          sum("c", 1n, { max: 10n }),
        ]),
      ) as { ok: boolean; error: string; message: string };
      assert.deepEqual([r.ok, r.error, r.message], [false, "value_type", SUM_RANGE_MESSAGE]);
      assert.equal(await entry(sm, "other"), null, "nothing of a failed operation is applied");
      assert.equal(await u64Of(sm, "c"), 10n);
      // No wrapping with bounds: 10 + (2^64 - 1) is above the default upper bound.
      await one(sm, 4, atomic([], [sum("c", (1n << 64n) - 1n, { min: 0n, clamp: true })]));
      assert.equal(await u64Of(sm, "c"), (1n << 64n) - 1n);
      await one(sm, 5, atomic([], [sum("lo", 1n, { min: 5n, clamp: true })]));
      assert.equal(await u64Of(sm, "lo"), 5n);
    });
  });

  Deno.test(`${kind}: sum, min and max on a value of another encoding abort with Deno KV's error`, async () => {
    await withSm(kind, async (sm) => {
      await one(sm, 1, encodeCommand(putCommand(b("v"), b("12345678"))));
      for (
        const [i, m] of ([
          sum("v", 1n),
          { type: "min", key: b("v"), value: u64le(1n) },
          { type: "max", key: b("v"), value: u64le(1n) },
        ] as AtomicMutation[]).entries()
      ) {
        const r = await one(
          sm,
          2 + i,
          atomic([], [{ type: "set", key: b("w"), value: b("x"), encoding: 3 }, m]),
        ) as { ok: boolean; error: string; message: string };
        assert.equal(r.error, "value_type");
        assert.equal(r.message, nonU64ValueMessage(m.type as "sum"));
        assert.equal(await entry(sm, "w"), null);
      }
      // A key set earlier in the same operation with another encoding counts too.
      const r = await one(
        sm,
        9,
        atomic([], [{ type: "set", key: b("n"), value: u64le(1n), encoding: 1 }, sum("n", 1n)]),
      ) as { error: string };
      assert.equal(r.error, "value_type");
      assert.deepEqual((await entry(sm, "v"))!.value, b("12345678"));
    });
  });

  Deno.test(`${kind}: setSuffixVersionstampedKey appends the commit's versionstamp as a key string`, async () => {
    await withSm(kind, async (sm) => {
      await one(sm, 1, encodeCommand(putCommand(b("x"), b("x"))));
      const m: AtomicMutation = {
        type: "setSuffixVersionstampedKey",
        key: b("q/"),
        value: b("job"),
        encoding: ValueEncoding.BYTES,
      };
      await one(sm, 2, atomic([], [m]));
      await one(sm, 3, atomic([], [m]));
      const got = await sm.scanEntries({ prefix: b("q/") });
      assert.deepEqual(got.map((e) => e.key), [
        suffixVersionstampedKey(b("q/"), makeVersionstamp(2)),
        suffixVersionstampedKey(b("q/"), makeVersionstamp(3)),
      ]);
      assert.equal(
        dec.decode(got[0].key),
        `q/\u0002${versionstampHex(makeVersionstamp(2))}\u0000`,
      );
    });
  });

  Deno.test(`${kind}: expired keys are hidden once the clock passes, swept by a sweep, never earlier`, async () => {
    await withSm(kind, async (sm) => {
      const changes: KvChange[] = [];
      sm.onChanges = (c) => changes.push(...c);
      await one(
        sm,
        1,
        atomic([], [
          { type: "set", key: b("t"), value: b("1"), encoding: 3, expireAt: 2000 },
          { type: "set", key: b("u"), value: b("1"), encoding: 3, expireAt: 5000 },
          { type: "set", key: b("o"), value: b("1"), encoding: 3, expireAt: 1500 },
        ], 1000),
      );
      // "o" is overwritten without an expiry: its index entry becomes stale.
      await one(sm, 2, encodeCommand(putCommand(b("o"), b("2"), undefined, 1001)));
      assert.equal(await sm.nextExpiry(), 1500);
      // Before its time a key is there, also to a sweep.
      await one(sm, 3, encodeCommand(expirySweepCommand(100, 1999)));
      assert.deepEqual((await entry(sm, "t"))?.expireAt, 2000);
      assert.equal(sm.clock(), 1999);
      // A command carrying a later time moves the clock: "t" is hidden at once...
      await one(sm, 4, encodeCommand(putCommand(b("p"), b("p"), undefined, 2000)));
      assert.equal(await entry(sm, "t"), null);
      assert.equal(await sm.get(b("t")), undefined);
      assert.deepEqual((await sm.scanEntries()).map((e) => dec.decode(e.key)), ["o", "p", "u"]);
      // ...and to checks: "absent" passes.
      const r = await one(sm, 5, atomic([{ key: b("t"), versionstamp: null }], [sum("k", 1n)]));
      assert.equal((r as { ok: boolean }).ok, true);
      // The sweep deletes it (and only it: "o" was overwritten, "u" is not due).
      changes.length = 0;
      const swept = await one(sm, 6, encodeCommand(expirySweepCommand(100, 2500)));
      assert.deepEqual(swept, {
        ok: true,
        versionstamp: makeVersionstamp(6),
        expired: 1,
        more: false,
      });
      assert.deepEqual(changes.map((c) => [dec.decode(c.key), c.entry]), [["t", null]]);
      assert.equal(await sm.nextExpiry(), 5000);
      assert.ok(await entry(sm, "o"));
      assert.ok(await entry(sm, "u"));
      // A sweep deletes at most its bound.
      const many = Array.from({ length: 5 }, (_, i) => ({
        type: "set" as const,
        key: b(`e${i}`),
        value: b("v"),
        encoding: 3,
        expireAt: 3000,
      }));
      await one(sm, 7, atomic([], many, 2600));
      const part = await one(sm, 8, encodeCommand(expirySweepCommand(3, 3000))) as {
        expired: number;
        more: boolean;
      };
      assert.deepEqual([part.expired, part.more], [3, true]);
      const rest = await one(sm, 9, encodeCommand(expirySweepCommand(3, 3000))) as {
        expired: number;
        more: boolean;
      };
      assert.deepEqual([rest.expired, rest.more], [2, false]);
    });
  });

  Deno.test(`${kind}: a session retry of an atomic answers the first result again`, async () => {
    await withSm(kind, async (sm) => {
      await one(sm, 1, encodeCommand(registerSessionCommand(60_000, 10, 1)));
      const s = { clientId: 1n, seq: 1 };
      const cas = encodeCommand(
        atomicCommand([{ key: b("k"), versionstamp: null }], [sum("k", 1n)], s, 2),
      );
      assert.deepEqual(await one(sm, 2, cas), { ok: true, versionstamp: makeVersionstamp(2) });
      // The retry is not applied again (the counter stays 1) and answers the same versionstamp.
      assert.deepEqual(await one(sm, 3, cas), { ok: true, versionstamp: makeVersionstamp(2) });
      assert.equal(await u64Of(sm, "k"), 1n);
      // The session record keeps the result across its uses (kept relative to the last use).
      assert.deepEqual((await sm.session(1n))?.result, {
        kind: "ok",
        versionstamp: makeVersionstamp(2),
      });
      const s2 = { clientId: 1n, seq: 2 };
      const failing = encodeCommand(
        atomicCommand([{ key: b("k"), versionstamp: null }], [sum("k", 1n)], s2, 3),
      );
      const f1 = await one(sm, 4, failing) as { failedChecks: number[] };
      const f2 = await one(sm, 5, failing) as { failedChecks: number[] };
      assert.deepEqual(f1.failedChecks, [0]);
      assert.deepEqual(f2, f1);
      const typeErr = encodeCommand(
        atomicCommand(
          [],
          [{ type: "set", key: b("k"), value: b("x"), encoding: 3 }, sum("k", 1n)],
          {
            clientId: 1n,
            seq: 3,
          },
          4,
        ),
      );
      await one(sm, 6, encodeCommand(putCommand(b("k"), b("bytes"))));
      const t1 = await one(sm, 7, typeErr);
      assert.deepEqual(await one(sm, 8, typeErr), t1);
    });
  });

  Deno.test(`${kind}: snapshots, export/import and reopen keep versionstamps, encodings and expiry`, async () => {
    await withSm(kind, async (sm, reopen) => {
      await one(sm, 1, encodeCommand(putCommand(b("a"), b("1"), undefined, 100)));
      await one(
        sm,
        2,
        atomic([], [
          { type: "set", key: b("e"), value: b("v8"), encoding: 1, expireAt: 10_000 },
          sum("n", 3n),
        ], 200),
      );
      const want = await sm.scanEntries();
      assert.equal(want.length, 3);
      const snap = await sm.snapshot();
      const exp = await sm.exportState();
      const entries: StateEntry[] = [];
      for await (const e of exp.entries()) entries.push(e);
      const meta: [Uint8Array, Uint8Array][] = [];
      for await (const m of exp.meta()) meta.push(m);
      exp.release();
      assert.deepEqual(entries.find((e) => dec.decode(e.key) === "e")?.expireAt, 10_000);
      for (const target of KINDS) {
        await withSm(target, async (other) => {
          await other.restore(snap, 2);
          assert.deepEqual(await other.scanEntries(), want);
          assert.equal(await other.nextExpiry(), 10_000);
        });
        await withSm(target, async (other) => {
          await other.importState({
            appliedIndex: 2,
            meta,
            entries: (async function* () {
              yield* entries;
            })(),
          });
          assert.deepEqual(await other.scanEntries(), want);
          const swept = await one(other, 3, encodeCommand(expirySweepCommand(10, 10_000)));
          assert.equal((swept as { expired: number }).expired, 1);
        });
      }
      if (kind !== "memory") {
        const again = await reopen();
        assert.deepEqual(await again.scanEntries(), want);
        assert.equal(await again.nextExpiry(), 10_000);
      }
    });
  });

  Deno.test(`${kind}: a backup entry without a versionstamp gets the import's index`, async () => {
    await withSm(kind, async (sm) => {
      await sm.importState({
        appliedIndex: 42,
        meta: [],
        entries: (async function* () {
          yield { key: b("old"), value: b("raw") };
        })(),
      });
      assert.deepEqual(await entry(sm, "old"), {
        key: b("old"),
        value: b("raw"),
        encoding: ValueEncoding.BYTES,
        versionstamp: makeVersionstamp(42),
      });
    });
  });
}

Deno.test("lsm: a store of an older version (raw values, no format marker) is refused at open", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-model-legacy-" });
  try {
    const db = await LsmDb.open(`${dir}/sm/sm-000001`);
    await db.write([{ type: "put", key: userKey(b("k")), value: b("raw") }], { sync: true });
    await db.close();
    await Deno.writeTextFile(`${dir}/sm/CURRENT`, "sm-000001\n");
    await assert.rejects(() => openStorage("lsm", dir), /older gokv/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("simplefile: a state file of an older version is upgraded to bytes records", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-model-sf-" });
  try {
    const st = { version: 1, appliedIndex: 7, data: [[btoa("k"), btoa("v")]] };
    const s = await openStorage("simplefile", dir);
    await s.sm.close();
    await s.log.close();
    Deno.writeTextFileSync(`${dir}/sm-state.json`, JSON.stringify(st) + "\n");
    const again = await openStorage("simplefile", dir);
    try {
      assert.deepEqual(await again.sm.getEntries([b("k")]), [{
        key: b("k"),
        value: b("v"),
        encoding: ValueEncoding.BYTES,
        versionstamp: makeVersionstamp(7),
      }]);
    } finally {
      await again.sm.close();
      await again.log.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
