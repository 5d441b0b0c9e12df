/**
 * Regression tests (review of a9ea805): a poll resuming after a write inside an entry, (index, j), on
 * a node that has not applied that entry yet delivered the whole entry when it arrived, including
 * the changes at or before (index, j); and a resume after a write of the history's floor entry.
 */
import assert from "node:assert/strict";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import { encodeBatch, encodeCommand, putCommand } from "../storage/command.ts";
import { makeVersionstamp, versionstampHex } from "../storage/kv_model.ts";
import { WatchHub } from "./watch.ts";
import { WatchCompactedError } from "../client/errors.ts";

const b = (s: string) => new TextEncoder().encode(s);
const dec = new TextDecoder();

Deno.test("a poll after (10, 1) on a node still at 9 gets only the changes after (10, 1)", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  for (let i = 1; i <= 9; i++) {
    await sm.apply([{ index: i, data: encodeCommand(putCommand(b("other"), b(String(i)))) }]);
  }
  const sel = { keys: [b("k")], prefixes: [] };
  // The client's put answered (10, 1) (the leader applied it); this node has not applied 10 yet.
  const polling = hub.poll(sel, makeVersionstamp(10, 1), 5_000, 100);
  await sm.apply([{
    index: 10,
    data: encodeBatch([
      encodeCommand(putCommand(b("k"), b("v0"))),
      encodeCommand(putCommand(b("k"), b("v1"))), // the client's own write: (10, 1)
      encodeCommand(putCommand(b("k"), b("v2"))),
    ]),
  }]);
  const p = await polling;
  const stamps = p.events.flatMap((e) =>
    e.changes.map((c) => versionstampHex(c.entry!.versionstamp))
  );
  assert.deepEqual(
    stamps,
    [versionstampHex(makeVersionstamp(10, 2))],
    "only the change after (10, 1)",
  );
});

Deno.test("same without waiting: since() right away on the lagging node, then a later poll from its position", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  for (let i = 1; i <= 9; i++) {
    await sm.apply([{ index: i, data: encodeCommand(putCommand(b("other"), b(String(i)))) }]);
  }
  const sel = { keys: [b("k")], prefixes: [] };
  const first = await hub.poll(sel, makeVersionstamp(10, 1), 0, 100);
  // The answer's position must not be below what the caller asked to resume after.
  assert.ok(
    versionstampHex(first.position) >= versionstampHex(makeVersionstamp(10, 1)),
    `position ${versionstampHex(first.position)} is below the after (10, 1)`,
  );
});

Deno.test("a resume after the last write of the history's floor entry is served; one inside it is compacted", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 2, maxBytes: 1 << 20 });
  const put = (k: string, v: string) => encodeCommand(putCommand(b(k), b(v)));
  await sm.apply([{ index: 1, data: encodeBatch([put("a", "1"), put("b", "1")]) }]);
  await sm.apply([{ index: 2, data: put("k", "2") }]);
  await sm.apply([{ index: 3, data: put("k", "3") }]); // entry 1 trimmed: the floor is 1
  assert.equal(versionstampHex(hub.floor), "0000000000000001ffff");
  const all = { keys: [], prefixes: [b("")] };
  // (1, 1) was entry 1's last write: nothing of it is missing.
  const p = await hub.poll(all, makeVersionstamp(1, 1), 0, 100);
  assert.deepEqual(p.events.map((e) => e.changes.map((c) => dec.decode(c.key))), [["k"], ["k"]]);
  // (1, 0): b=1 at (1, 1) is no longer held.
  await assert.rejects(hub.poll(all, makeVersionstamp(1, 0), 0, 100), WatchCompactedError);
  await sm.apply([{ index: 4, data: put("k", "4") }]); // entry 2 trimmed: a single put's stamp
  const q = await hub.poll(all, makeVersionstamp(2, 0), 0, 100);
  assert.equal(q.events.length, 2);
});
