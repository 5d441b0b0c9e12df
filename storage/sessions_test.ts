/**
 * Client sessions (kv_core.ts), run unchanged against every backend: registration, exactly-once
 * application, refusals, deterministic expiry from command timestamps, the table bound, and the
 * table surviving snapshot, restore and reopen.
 */
import assert from "node:assert/strict";
import {
  type ApplyResult,
  deleteCommand,
  encodeCommand,
  type EntryResult,
  type KvStateMachine,
  putCommand,
  registerSessionCommand,
  type StorageKind,
} from "./mod.ts";
import { KINDS, withSm } from "./testdata/with_sm.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);

/** Applies encoded commands from `index` on. */
function applier(sm: () => KvStateMachine) {
  let next = 1;
  return async (...cmds: Uint8Array[]): Promise<ApplyResult[]> => {
    const from = next;
    next += cmds.length;
    // No batch entries here: one command's result per entry.
    return await sm().apply(cmds.map((data, i) => ({ index: from + i, data }))) as ApplyResult[];
  };
}

const errorOf = (r: EntryResult) => {
  if (Array.isArray(r)) throw new Error("a batch result where one command's was expected");
  return r && r.ok === false ? r.error : "ok";
};
const value = async (sm: KvStateMachine, k: string) => {
  const v = await sm.get(b(k));
  return v === undefined ? undefined : dec.decode(v);
};

for (const kind of KINDS) {
  Deno.test(`${kind}: a registered session applies each seq once and refuses reuse with a different command`, async () => {
    await withSm(kind, async (sm) => {
      const apply = applier(() => sm);
      const [reg] = await apply(encodeCommand(registerSessionCommand(60_000, 100, 1_000)));
      assert.deepEqual(reg, { ok: true, sessionId: 1n });
      const s = (seq: number) => ({ clientId: 1n, seq });
      const put = (v: string, seq: number) =>
        encodeCommand(putCommand(b("k"), b(v), s(seq), 1_001));
      const res = await apply(
        put("v1", 1),
        put("v1", 1), // a retry of the same command: cached result, nothing applied twice
        put("other", 1), // the seq reused for a different command: refused
        put("v2", 2),
        put("v1", 1), // below the last seq: refused
        encodeCommand(deleteCommand(b("k"), s(3), 1_002)),
        encodeCommand(deleteCommand(b("k"), s(3), 1_003)),
        put("v4", 4),
      );
      assert.deepEqual(res.map(errorOf), [
        "ok",
        "ok",
        "session_seq",
        "ok",
        "session_seq",
        "ok",
        "ok",
        "ok",
      ]);
      assert.equal(await value(sm, "k"), "v4");
      const info = await sm.session(1n);
      assert.equal(info?.lastSeq, 4);
      assert.equal(info?.lastActive, 1_003);
      assert.equal(sm.clock(), 1_003);
    });
  });

  Deno.test(`${kind}: unknown sessions, session 0 and (0, 0) writes are refused and write nothing`, async () => {
    await withSm(kind, async (sm) => {
      const apply = applier(() => sm);
      const res = await apply(
        encodeCommand(putCommand(b("a"), b("1"), { clientId: 0n, seq: 0 }, 5)),
        encodeCommand(putCommand(b("a"), b("2"), { clientId: 0n, seq: 0 }, 5)),
        encodeCommand(putCommand(b("a"), b("3"), { clientId: 12345n, seq: 1 }, 5)),
        encodeCommand(deleteCommand(b("a"), { clientId: 99n, seq: 1 }, 5)),
      );
      assert.deepEqual(res.map(errorOf), [
        "bad_session",
        "bad_session",
        "session_expired",
        "session_expired",
      ]);
      assert.equal(await value(sm, "a"), undefined);
      assert.equal(sm.sessionCount(), 0);
      assert.equal(sm.appliedIndex(), 4);
    });
  });

  Deno.test(`${kind}: sessions expire from command timestamps after their idle time, on every replica alike`, async () => {
    await withSm(kind, async (sm) => {
      const apply = applier(() => sm);
      await apply(
        encodeCommand(registerSessionCommand(1_000, 100, 10_000)), // session 1
        encodeCommand(registerSessionCommand(5_000, 100, 10_000)), // session 2
      );
      const put = (id: bigint, seq: number, t: number) =>
        encodeCommand(putCommand(b(`k${id}`), b(`${seq}`), { clientId: id, seq }, t));
      // Used within its idle time: alive and refreshed.
      assert.deepEqual((await apply(put(1n, 1, 10_900))).map(errorOf), ["ok"]);
      // A timestamp never moves the clock backwards (an older leader's entry).
      assert.deepEqual((await apply(put(1n, 2, 2_000))).map(errorOf), ["ok"]);
      assert.equal(sm.clock(), 10_900);
      assert.equal((await sm.session(1n))?.lastActive, 10_900);
      // Exactly at the idle time it is still alive; one millisecond later it has expired. A
      // command without a session advances the clock too.
      await apply(encodeCommand(putCommand(b("tick"), b(""), undefined, 11_900)));
      assert.deepEqual((await apply(put(1n, 3, 11_900))).map(errorOf), ["ok"]);
      await apply(encodeCommand(putCommand(b("tick"), b(""), undefined, 12_901)));
      assert.deepEqual((await apply(put(1n, 4, 12_901))).map(errorOf), ["session_expired"]);
      assert.equal(await value(sm, "k1"), "3");
      // The expired session is gone: later attempts stay refused.
      assert.equal(await sm.session(1n), undefined);
      assert.deepEqual((await apply(put(1n, 5, 12_902))).map(errorOf), ["session_expired"]);
      // The other session has a longer idle time.
      assert.deepEqual((await apply(put(2n, 1, 14_000))).map(errorOf), ["ok"]);
      assert.equal(sm.sessionCount(), 1);
    });
  });

  Deno.test(`${kind}: registering evicts expired sessions first and keeps the table at its bound`, async () => {
    await withSm(kind, async (sm) => {
      const apply = applier(() => sm);
      const BOUND = 1_000;
      // 100,000 CLI invocations: each registers a session and writes once.
      let t = 1_000_000;
      let index = 0;
      let keepAlive = 0n;
      for (let round = 0; round < 200; round++) {
        const cmds: Uint8Array[] = [];
        for (let i = 0; i < 500; i++) {
          t += 1;
          cmds.push(encodeCommand(registerSessionCommand(3_600_000, BOUND, t)));
        }
        const res = await apply(...cmds);
        const first = (res[0] as { sessionId: bigint }).sessionId;
        assert.equal(first, BigInt(index + 1));
        index += cmds.length;
        if (round === 0) keepAlive = first;
        // One early session stays in use (every 500 registrations): least recently used
        // eviction keeps it.
        const [r] = await apply(
          encodeCommand(
            putCommand(b("alive"), b(`${round}`), { clientId: keepAlive, seq: round + 1 }, t),
          ),
        );
        assert.equal(errorOf(r), "ok");
        index++;
        assert.ok(sm.sessionCount() <= BOUND, `table at ${sm.sessionCount()}`);
      }
      assert.equal(sm.sessionCount(), BOUND);
      assert.equal(sm.stats().sessions, BOUND);
      assert.ok(await sm.session(keepAlive));
      assert.equal(await sm.session(2n), undefined, "the oldest sessions were evicted");
      const list = await sm.sessionList();
      assert.equal(list.length, BOUND);
      // Expired sessions go even below the bound: after an idle hour, a registration removes one
      // for the bound and up to 16 more expired ones.
      t += 3_600_001;
      await apply(encodeCommand(registerSessionCommand(3_600_000, BOUND, t)));
      assert.equal(sm.sessionCount(), BOUND - 1 - 16 + 1);
      await apply(encodeCommand(registerSessionCommand(3_600_000, BOUND, t)));
      assert.equal(sm.sessionCount(), BOUND - 1 - 16 + 1 - 16 + 1);
    });
  });

  Deno.test(`${kind}: the session table and clock survive snapshot restore (onto every backend) and reopen`, async () => {
    await withSm(kind, async (sm, reopen) => {
      const apply = applier(() => sm);
      for (let i = 0; i < 50; i++) {
        await apply(encodeCommand(registerSessionCommand(60_000, 40, 100 + i)));
      }
      await apply(encodeCommand(putCommand(b("x"), b("1"), { clientId: 50n, seq: 7 }, 200)));
      const before = await sm.sessionList();
      assert.equal(before.length, 40);
      const snap = await sm.snapshot();
      for (const target of KINDS) {
        await withSm(target, async (other) => {
          await other.restore(snap, 51);
          assert.deepEqual(await other.sessionList(), before);
          assert.equal(other.sessionCount(), 40);
          assert.equal(other.clock(), 200);
          const [dup, bad, gone] = await other.apply([
            {
              index: 52,
              data: encodeCommand(putCommand(b("x"), b("1"), { clientId: 50n, seq: 7 }, 201)),
            },
            {
              index: 53,
              data: encodeCommand(putCommand(b("x"), b("2"), { clientId: 50n, seq: 7 }, 201)),
            },
            {
              index: 54,
              data: encodeCommand(putCommand(b("x"), b("3"), { clientId: 3n, seq: 1 }, 201)),
            },
          ]);
          assert.deepEqual([dup, bad, gone].map(errorOf), ["ok", "session_seq", "session_expired"]);
          assert.equal(await value(other, "x"), "1");
        });
      }
      if (kind !== "memory") {
        sm = await reopen();
        assert.deepEqual(await sm.sessionList(), before);
        assert.equal(sm.clock(), 200);
        const [dup] = await sm.apply([
          {
            index: 52,
            data: encodeCommand(putCommand(b("x"), b("1"), { clientId: 50n, seq: 7 }, 201)),
          },
        ]);
        assert.equal(errorOf(dup), "ok");
      }
    });
  });
}

Deno.test("a write under a session writes its user key and one session record, nothing more", async () => {
  const { KvCore } = await import("./kv_core.ts");
  const empty = { get: () => Promise.resolve(undefined), async *scan() {} };
  const core = KvCore.empty();
  const N = 64;
  const reg = await core.apply(
    empty,
    Array.from({ length: N }, (_, i) => ({
      index: i + 1,
      data: encodeCommand(registerSessionCommand(60_000, 1_000, 1_000)),
    })),
  );
  reg.commit();
  const batch = await core.apply(
    empty,
    Array.from({ length: N }, (_, i) => ({
      index: N + 1 + i,
      data: encodeCommand(
        putCommand(b(`k${i}`), b("v"), { clientId: BigInt(i + 1), seq: 1 }, 2_000),
      ),
    })),
  );
  assert.deepEqual(batch.results.map(errorOf), Array(N).fill("ok"));
  // N user keys, N session records, the applied index and the clock.
  assert.equal(batch.ops.length, 2 * N + 2);
  const records = batch.ops.filter((op) => op.key[0] === 0 && op.key[1] === 0x07);
  assert.equal(records.length, N);
  assert.ok(records.every((op) => op.type === "put" && op.value.length <= 24));
});

Deno.test("replicas applying one history in different batches, one reopened, evict the same sessions", async () => {
  const { mulberry32 } = await import("../lsm/prng.ts");
  const rand = mulberry32(16);
  // A history: registrations over a bound of 20, writes on random (live or gone) sessions, and a
  // clock that jumps now and then past the idle time of the short-lived sessions.
  const history: Uint8Array[] = [];
  const seqs = new Map<bigint, number>();
  let t = 1_000;
  for (let i = 0; i < 600; i++) {
    t += rand() < 0.05 ? 3_000 : 10;
    const r = rand();
    if (r < 0.2 || seqs.size === 0) {
      history.push(encodeCommand(registerSessionCommand(rand() < 0.5 ? 2_000 : 60_000, 20, t)));
      seqs.set(BigInt(history.length), 0);
    } else {
      const ids = [...seqs.keys()];
      const id = ids[Math.floor(rand() * ids.length)];
      const seq = seqs.get(id)! + (rand() < 0.1 ? 0 : 1); // sometimes a retry
      seqs.set(id, Math.max(seq, 1));
      history.push(encodeCommand(putCommand(b(`k${i % 7}`), b(`${i}`), { clientId: id, seq }, t)));
    }
  }
  const run = async (kind: StorageKind, batchOf: () => number, reopenAt: number) => {
    const results: string[] = [];
    const lists: string[] = [];
    await withSm(kind, async (first, reopen) => {
      let sm = first;
      let at = 0;
      let reopened = false;
      while (at < history.length) {
        const n = Math.min(batchOf(), history.length - at);
        const res = await sm.apply(
          history.slice(at, at + n).map((data, i) => ({ index: at + i + 1, data })),
        );
        results.push(
          ...res.map((r) => JSON.stringify(r, (_, v) => typeof v === "bigint" ? `${v}` : v)),
        );
        at += n;
        if (!reopened && at >= reopenAt && kind !== "memory") {
          sm = await reopen();
          reopened = true;
        }
        if (at % 50 < n) lists.push(JSON.stringify((await sm.sessionList()).map((s) => `${s.id}`)));
      }
      lists.push(JSON.stringify((await sm.sessionList()).map((s) => `${s.id}:${s.lastSeq}`)));
    });
    return { results, final: lists[lists.length - 1] };
  };
  const one = await run("memory", () => 1, Infinity);
  const sizes = mulberry32(7);
  for (const kind of ["lsm", "simplefile"] as const) {
    const other = await run(kind, () => 1 + Math.floor(sizes() * 40), 300);
    assert.deepEqual(other.results, one.results, kind);
    assert.equal(other.final, one.final, kind);
  }
  assert.ok(one.results.some((r) => r.includes("session_expired")), "some sessions expired");
});
