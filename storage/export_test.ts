/**
 * exportState / importState (backups) against every backend: the view is consistent at one
 * applied index while later commands apply, is read incrementally, and an import is atomic.
 */
import assert from "node:assert/strict";
import {
  type ApplyResult,
  encodeCommand,
  type KvStateMachine,
  MemoryStateMachine,
  openStorage,
  putCommand,
  registerSessionCommand,
  type StateEntry,
  type StorageKind,
} from "./mod.ts";

const KINDS: StorageKind[] = ["memory", "simplefile", "lsm"];
const enc = new TextEncoder();
const dec = new TextDecoder();

async function withSm(kind: StorageKind, fn: (sm: KvStateMachine) => Promise<void>) {
  const dir = Deno.makeTempDirSync({ prefix: `gokv-export-${kind}-` });
  const { log, sm } = await openStorage(kind, dir);
  try {
    await fn(sm);
  } finally {
    await log.close();
    await sm.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

function put(index: number, key: string, value: string, session?: [bigint, number]) {
  return {
    index,
    data: encodeCommand(
      putCommand(
        enc.encode(key),
        enc.encode(value),
        session ? { clientId: session[0], seq: session[1] } : undefined,
        1_000 + index,
      ),
    ),
  };
}

const register = (index: number) => ({
  index,
  data: encodeCommand(registerSessionCommand(60_000, 100, 1_000 + index)),
});

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function collect(it: AsyncIterable<StateEntry>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of it) out.push(`${dec.decode(e.key)}=${dec.decode(e.value)}`);
  return out;
}

for (const kind of KINDS) {
  Deno.test(`${kind}: exportState is one consistent view while later commands apply`, async () => {
    await withSm(kind, async (sm) => {
      await sm.apply([register(1), put(2, "a", "1", [1n, 1]), put(3, "b", "1"), put(4, "c", "1")]);
      const view = await sm.exportState();
      try {
        assert.equal(view.appliedIndex, 4);
        assert.equal(view.sessionCount, 1);
        // Applied after the view was taken: overwrite, a new key, a new session seq, a session.
        await sm.apply([put(5, "b", "2", [1n, 2]), put(6, "d", "2"), register(7)]);
        assert.deepEqual(await collect(view.entries()), ["a=1", "b=1", "c=1"]);
        // The view's session table is the one at index 4: importing it elsewhere shows seq 1.
        await withSm("memory", async (other) => {
          await other.importState({
            appliedIndex: view.appliedIndex,
            meta: await all(view.meta()),
            entries: view.entries(),
          });
          assert.equal(other.sessionCount(), 1);
          assert.equal((await other.session(1n))?.lastSeq, 1);
          assert.equal(other.clock(), 1_004);
        });
      } finally {
        view.release();
        view.release();
      }
      assert.deepEqual(
        (await sm.scan()).map(([k, v]) => `${dec.decode(k)}=${dec.decode(v)}`),
        ["a=1", "b=2", "c=1", "d=2"],
      );
    });
  });

  Deno.test(`${kind}: importState replaces the state; a failing stream keeps the old one`, async () => {
    await withSm(kind, async (sm) => {
      await sm.apply([put(1, "old", "x")]);
      async function* broken(): AsyncGenerator<StateEntry> {
        yield { key: enc.encode("new1"), value: enc.encode("y") };
        throw new Error("checksum mismatch");
      }
      await assert.rejects(
        sm.importState({ appliedIndex: 50, meta: [], entries: broken() }),
        /checksum mismatch/,
      );
      assert.equal(sm.appliedIndex(), 1);
      assert.deepEqual((await sm.scan()).map(([k]) => dec.decode(k)), ["old"]);

      async function* good(): AsyncGenerator<StateEntry> {
        for (let i = 0; i < 3000; i++) {
          yield { key: enc.encode(`k${String(i).padStart(5, "0")}`), value: enc.encode(`v${i}`) };
        }
      }
      // The meta records of a state where session 1 applied seq 4.
      const source = new MemoryStateMachine();
      await source.apply([register(1), put(2, "x", "y", [1n, 4])]);
      const view = await source.exportState();
      await sm.importState({ appliedIndex: 50, meta: view.meta(), entries: good() });
      assert.equal(sm.appliedIndex(), 50);
      assert.equal((await sm.session(1n))?.lastSeq, 4);
      const all = await sm.scan();
      assert.equal(all.length, 3000);
      assert.equal(dec.decode(all[2999][1]), "v2999");
      assert.equal(await sm.get(enc.encode("old")), undefined);
      // A duplicate of the imported session is answered from the session table.
      const r = await sm.apply([put(51, "x", "y", [1n, 4]), put(52, "k00000", "dup", [1n, 4])]);
      assert.deepEqual(r.map((x) => (x as ApplyResult)?.ok), [true, false]);
      assert.equal(dec.decode((await sm.get(enc.encode("k00000")))!), "v0");
      // Meta records must be the state machine's own: a user-range key is refused.
      await assert.rejects(
        sm.importState({
          appliedIndex: 60,
          meta: [[enc.encode("\x01k"), enc.encode("v")]],
          entries: good(),
        }),
        /meta record/,
      );
      assert.equal(sm.appliedIndex(), 52);
    });
  });
}
