/**
 * Regression tests (review of a9ea805): sessions used by one batch entry share their last-use index;
 * a replica that reopened or restored a snapshot rebuilt the order of use from the records' indexes
 * (ties in session-id order) and evicted a different session than a running replica at the next
 * registration over the bound. The records now keep the position of the last use.
 */
import assert from "node:assert/strict";
import {
  encodeBatch,
  encodeCommand,
  type KvStateMachine,
  putCommand,
  registerSessionCommand,
} from "./mod.ts";
import { KINDS, withSm } from "./testdata/with_sm.ts";

const b = (s: string) => new TextEncoder().encode(s);
const MAX = 2;

async function history(sm: KvStateMachine, reopen?: () => Promise<KvStateMachine>) {
  await sm.apply([{ index: 1, data: encodeCommand(registerSessionCommand(60_000, MAX, 1_000)) }]);
  await sm.apply([{ index: 2, data: encodeCommand(registerSessionCommand(60_000, MAX, 1_000)) }]);
  // One batch entry: session 2 first, then session 1 (1 is the more recently used).
  await sm.apply([{
    index: 3,
    data: encodeBatch([
      encodeCommand(putCommand(b("x"), b("1"), { clientId: 2n, seq: 1 }, 1_001)),
      encodeCommand(putCommand(b("y"), b("1"), { clientId: 1n, seq: 1 }, 1_001)),
    ]),
  }]);
  if (reopen) sm = await reopen();
  // A third session over the bound of 2 evicts the least recently used: session 2.
  await sm.apply([{ index: 4, data: encodeCommand(registerSessionCommand(60_000, MAX, 1_002)) }]);
  // The client of session 2 writes again: applied where session 2 survived, refused elsewhere.
  await sm.apply([{
    index: 5,
    data: encodeCommand(putCommand(b("z"), b("2"), { clientId: 2n, seq: 2 }, 1_003)),
  }]);
  const z = await sm.get(b("z"));
  return [...(await sm.sessionList()).map((s) => `${s.id}`).sort(), `z=${z ? "set" : "absent"}`];
}

for (const kind of KINDS.filter((k) => k !== "memory")) {
  Deno.test(`${kind}: a replica that reopened after a batch entry evicts the same session as one that did not`, async () => {
    let live: string[] = [], reopened: string[] = [];
    await withSm(kind, async (sm) => {
      live = await history(sm);
    });
    await withSm(kind, async (sm, reopen) => {
      reopened = await history(sm, reopen);
    });
    assert.deepEqual(live, ["1", "4", "z=absent"], "the running replica evicts session 2");
    assert.deepEqual(reopened, live, "the reopened replica evicts the same session");
  });
}

for (const kind of KINDS) {
  Deno.test(`${kind}: a replica that installed a snapshot taken after a batch entry evicts the same session`, async () => {
    let live: string[] = [], restored: string[] = [];
    await withSm(kind, async (sm) => {
      live = await history(sm);
    });
    await withSm(kind, async (sm) => {
      await withSm(kind, async (other) => {
        restored = await history(sm, async () => {
          await other.restore(await sm.snapshot(), sm.appliedIndex());
          return other;
        });
      });
    });
    assert.deepEqual(restored, live, "the replica that installed a snapshot evicts the same");
  });
}
