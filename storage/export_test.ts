/**
 * exportState / importState (backups) against every backend: the view is consistent at one
 * applied index while later commands apply, is read incrementally, and an import is atomic.
 */
import assert from "node:assert/strict";
import {
  encodeCommand,
  type KvStateMachine,
  openStorage,
  putCommand,
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
      ),
    ),
  };
}

async function collect(it: AsyncIterable<StateEntry>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of it) out.push(`${dec.decode(e.key)}=${dec.decode(e.value)}`);
  return out;
}

for (const kind of KINDS) {
  Deno.test(`${kind}: exportState is one consistent view while later commands apply`, async () => {
    await withSm(kind, async (sm) => {
      await sm.apply([put(1, "a", "1", [7n, 1]), put(2, "b", "1"), put(3, "c", "1")]);
      const view = await sm.exportState();
      try {
        assert.equal(view.appliedIndex, 3);
        assert.deepEqual(view.sessions.get(7n)?.lastSeq, 1);
        // Applied after the view was taken: overwrite, a new key, a new session seq.
        await sm.apply([put(4, "b", "2", [7n, 2]), put(5, "d", "2")]);
        assert.deepEqual(await collect(view.entries()), ["a=1", "b=1", "c=1"]);
        assert.equal(view.sessions.get(7n)?.lastSeq, 1);
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
        sm.importState({ appliedIndex: 50, sessions: new Map(), entries: broken() }),
        /checksum mismatch/,
      );
      assert.equal(sm.appliedIndex(), 1);
      assert.deepEqual((await sm.scan()).map(([k]) => dec.decode(k)), ["old"]);

      async function* good(): AsyncGenerator<StateEntry> {
        for (let i = 0; i < 3000; i++) {
          yield { key: enc.encode(`k${String(i).padStart(5, "0")}`), value: enc.encode(`v${i}`) };
        }
      }
      await sm.importState({
        appliedIndex: 50,
        sessions: new Map([[9n, { lastSeq: 4, lastResult: { ok: true } }]]),
        entries: good(),
      });
      assert.equal(sm.appliedIndex(), 50);
      assert.equal(sm.sessions().get(9n)?.lastSeq, 4);
      const all = await sm.scan();
      assert.equal(all.length, 3000);
      assert.equal(dec.decode(all[2999][1]), "v2999");
      assert.equal(await sm.get(enc.encode("old")), undefined);
      // A duplicate of the imported session is answered from the session table.
      const r = await sm.apply([put(51, "k00000", "dup", [9n, 4])]);
      assert.deepEqual(r, [{ ok: true }]);
      assert.equal(dec.decode((await sm.get(enc.encode("k00000")))!), "v0");
    });
  });
}
