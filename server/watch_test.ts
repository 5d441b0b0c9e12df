/**
 * Watches: the change history (bounds, resume, compaction, snapshots), the initial state, the
 * client library's watch over the binary protocol and the HTTP Server-Sent Events.
 */
import assert from "node:assert/strict";
import { Prng } from "../raft/sim/prng.ts";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import { LsmStateMachine } from "../storage/lsm_sm.ts";
import { SimpleFileStateMachine } from "../storage/simplefile_sm.ts";
import {
  atomicCommand,
  deleteCommand,
  encodeBatch,
  encodeCommand,
  putCommand,
} from "../storage/command.ts";
import {
  type KvEntry,
  makeVersionstamp,
  parseVersionstamp,
  throughVersionstamp,
  ValueEncoding,
  versionstampHex,
  versionstampIndex,
} from "../storage/kv_model.ts";
import type { KvChange } from "../storage/kv_state_machine.ts";
import { WatchCompactedError } from "../client/errors.ts";
import { Client, type WatchMessage } from "../client/client.ts";
import { WatchHub } from "./watch.ts";
import { startFakeNode } from "./testing.ts";
import { startServer } from "./server.ts";
import { defaultConfig } from "../config/config.ts";
import { nullLogger } from "../raft/logger.ts";
import { createHttpHandler } from "./http.ts";
import { HttpListener } from "./http_listener.ts";
import { Consistency, encodeRequest, Op } from "../client/protocol.ts";

const b = (s: string) => new TextEncoder().encode(s);
const dec = new TextDecoder();

async function apply(sm: MemoryStateMachine, index: number, key: string, value: string) {
  await sm.apply([{ index, data: encodeCommand(putCommand(b(key), b(value))) }]);
}

Deno.test("the hub keeps commits in order, filters by key and prefix, and resumes after any kept versionstamp", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  await apply(sm, 1, "a/1", "x");
  await apply(sm, 2, "b", "y");
  await apply(sm, 3, "a/2", "z");
  const sel = { keys: [b("b")], prefixes: [b("a/")] };
  const all = hub.since(sel, 0, 100);
  assert.deepEqual(all.events.map((e) => versionstampHex(e.versionstamp)), [
    versionstampHex(makeVersionstamp(1)),
    versionstampHex(makeVersionstamp(2)),
    versionstampHex(makeVersionstamp(3)),
  ]);
  assert.equal(all.position, 3);
  const onlyA = hub.since({ keys: [], prefixes: [b("a/")] }, 1, 100);
  assert.deepEqual(onlyA.events.map((e) => dec.decode(e.changes[0].key)), ["a/2"]);
  // The exact key "b" does not match "bb".
  await apply(sm, 4, "bb", "q");
  assert.equal(hub.since({ keys: [b("b")], prefixes: [] }, 2, 100).events.length, 0);
  // `max` bounds an answer; its position says where the next continues.
  const page = hub.since(sel, 0, 2);
  assert.equal(page.events.length, 2);
  assert.equal(page.position, 2);
});

Deno.test("a batch entry's commits are one event stamped by its last change; a resume after a write inside the entry gets the rest of it", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  await apply(sm, 1, "a", "0");
  const batch = encodeBatch([
    encodeCommand(putCommand(b("a"), b("1"))),
    encodeCommand(putCommand(b("b"), b("1"))),
    encodeCommand(deleteCommand(b("a"))),
    encodeCommand(putCommand(b("c"), b("1"))),
  ]);
  const [res] = await sm.apply([{ index: 2, data: batch }]);
  const stamps = (res as { versionstamp: Uint8Array }[]).map((r) =>
    versionstampHex(r.versionstamp)
  );
  assert.deepEqual(stamps, [0, 1, 2, 3].map((j) => versionstampHex(makeVersionstamp(2, j))));
  await apply(sm, 3, "b", "2");
  const all = { keys: [], prefixes: [b("")] };
  const keysOf = (e: { changes: { key: Uint8Array }[] }) => e.changes.map((c) => dec.decode(c.key));
  const ev = hub.since(all, 1, 100).events;
  assert.deepEqual(ev.map(keysOf), [["a", "b", "a", "c"], ["b"]]);
  assert.equal(versionstampHex(ev[0].versionstamp), stamps[3]);
  // Selected keys only: the event's stamp is that of its last selected change.
  const onlyA = hub.since({ keys: [b("a")], prefixes: [] }, 1, 100).events;
  assert.equal(versionstampHex(onlyA[0].versionstamp), stamps[2]);
  // After the write at (2, 1): the rest of entry 2, then entry 3.
  const p = await hub.poll(all, makeVersionstamp(2, 1), 0, 100);
  assert.deepEqual(p.events.map(keysOf), [["a", "c"], ["b"]]);
  assert.equal(versionstampHex(p.position), versionstampHex(throughVersionstamp(3)));
  // After an event's stamp: nothing of that entry again.
  const q = await hub.poll({ keys: [b("a")], prefixes: [] }, onlyA[0].versionstamp, 0, 100);
  assert.equal(q.events.length, 0);
  const r = await hub.poll(all, ev[0].versionstamp, 0, 100);
  assert.deepEqual(r.events.map(keysOf), [["b"]]);
  // Every write of entry 2 is below its through-stamp and above entry 1's.
  for (const st of stamps) {
    assert.ok(st < versionstampHex(throughVersionstamp(2)));
    assert.ok(st > versionstampHex(throughVersionstamp(1)));
  }
});

Deno.test("the hub's events hold exactly the changes the state machine reported (encoding, expiry, deletes, several commits and keys per batch)", async () => {
  const sm = new MemoryStateMachine();
  const reported: KvChange[][] = [];
  sm.onChanges = (changes) => reported.push(changes);
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  const far = Date.now() + 3_600_000;
  // One batch: a put, an atomic of three keys (V8 value with expiry, LE64, delete), a delete.
  await sm.apply([
    { index: 1, data: encodeCommand(putCommand(b("p/a"), b("first"))) },
    {
      index: 2,
      data: encodeCommand(atomicCommand([], [
        { type: "set", key: b("p/b"), value: b("v8!"), encoding: ValueEncoding.V8, expireAt: far },
        {
          type: "set",
          key: b("p/c"),
          value: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]),
          encoding: ValueEncoding.LE64,
        },
        { type: "delete", key: b("p/a") },
      ])),
    },
    { index: 3, data: encodeCommand(deleteCommand(b("p/c"))) },
  ]);
  // A second batch: one more commit, outside the selected prefix too.
  await sm.apply([
    { index: 4, data: encodeCommand(putCommand(b("p/d"), new Uint8Array(300).fill(7))) },
    { index: 5, data: encodeCommand(putCommand(b("q/x"), b("other"))) },
  ]);
  const plain = (e: KvEntry | null) =>
    e && {
      key: dec.decode(e.key),
      value: [...e.value],
      encoding: e.encoding,
      versionstamp: versionstampHex(e.versionstamp),
      expireAt: e.expireAt,
    };
  // What the state machine reported, grouped per commit: the expected events.
  const expected = new Map<string, { key: string; entry: ReturnType<typeof plain> }[]>();
  for (const c of reported.flat()) {
    if (!dec.decode(c.key).startsWith("p/")) continue;
    const vs = versionstampHex(c.versionstamp);
    if (!expected.has(vs)) expected.set(vs, []);
    expected.get(vs)!.push({ key: dec.decode(c.key), entry: plain(c.entry) });
  }
  assert.equal(expected.size, 4);
  const got = hub.since({ keys: [], prefixes: [b("p/")] }, 0, 100);
  assert.deepEqual(
    got.events.map((e) => [
      versionstampHex(e.versionstamp),
      e.changes.map((c) => ({ key: dec.decode(c.key), entry: plain(c.entry) })),
    ]),
    [...expected],
  );
  assert.equal(got.position, 5);
  const atomic = got.events[1].changes;
  assert.equal(atomic.length, 3);
  assert.equal(atomic[0].entry?.expireAt, far);
  assert.equal(atomic[0].entry?.encoding, ValueEncoding.V8);
  assert.equal(atomic[2].entry, null);
  // Exact keys select within a packed commit; resuming inside the first batch works.
  const one = hub.since({ keys: [b("p/c")], prefixes: [] }, 1, 100);
  assert.deepEqual(one.events.map((e) => e.changes.map((c) => c.entry?.encoding ?? null)), [
    [ValueEncoding.LE64],
    [null],
  ]);
  // An answer is a copy: changing it changes nothing the next poll sees.
  got.events[0].changes[0].entry!.value.fill(0);
  got.events[0].changes[0].key.fill(0);
  const again = hub.since({ keys: [b("p/a")], prefixes: [] }, 0, 1);
  assert.equal(dec.decode(again.events[0].changes[0].entry!.value), "first");
});

Deno.test("the history is bounded by count and bytes; an older resume is WatchCompactedError naming the floor", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 3, maxBytes: 1 << 20 });
  for (let i = 1; i <= 5; i++) await apply(sm, i, `k${i}`, "v");
  assert.equal(hub.size, 3);
  const sel = { keys: [], prefixes: [b("")] };
  assert.equal(hub.since(sel, 2, 10).events.length, 3);
  assert.throws(
    () => hub.since(sel, 1, 10),
    (e: unknown) =>
      e instanceof WatchCompactedError && e.oldest === versionstampHex(throughVersionstamp(2)),
  );
  const small = new WatchHub(new MemoryStateMachine(), { maxEvents: 1000, maxBytes: 1 });
  assert.equal(small.size, 0);
  const sm2 = new MemoryStateMachine();
  const byBytes = new WatchHub(sm2, { maxEvents: 1000, maxBytes: 300 });
  for (let i = 1; i <= 10; i++) await apply(sm2, i, `k${i}`, "x".repeat(100));
  assert.ok(byBytes.bytes <= 300 || byBytes.size === 1, `bytes ${byBytes.bytes}`);
  assert.ok(byBytes.size < 10);
});

Deno.test("a snapshot install resets the history: resuming before it is compacted", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  await apply(sm, 1, "a", "1");
  const other = new MemoryStateMachine();
  await apply(other, 1, "a", "1");
  await apply(other, 2, "a", "2");
  await sm.restore(await other.snapshot(), 2);
  const sel = { keys: [b("a")], prefixes: [] };
  assert.throws(() => hub.since(sel, 1, 10), WatchCompactedError);
  assert.equal(hub.since(sel, 2, 10).events.length, 0);
});

Deno.test("a poll without after reports the current state, then exactly the later commits", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  await apply(sm, 1, "p/1", "a");
  await apply(sm, 2, "p/2", "b");
  const sel = { keys: [b("solo")], prefixes: [b("p/")] };
  const first = await hub.poll(sel, undefined, 0, 100);
  assert.deepEqual(
    first.initial!.entries.map((e) => [dec.decode(e.key), e.entry && dec.decode(e.entry.value)]),
    [
      ["solo", null],
      ["p/1", "a"],
      ["p/2", "b"],
    ],
  );
  assert.deepEqual(first.initial!.versionstamp, throughVersionstamp(2));
  assert.equal(first.events.length, 0, "nothing before the state is repeated");
  // A poll that waits is woken by the next commit.
  const waiting = hub.poll(sel, first.position, 5_000, 100);
  await apply(sm, 3, "p/3", "c");
  const next = await waiting;
  assert.deepEqual(next.events.map((e) => dec.decode(e.changes[0].key)), ["p/3"]);
  // A poll with nothing matching answers at its deadline with the position it reached.
  await apply(sm, 4, "other", "x");
  const idle = await hub.poll(sel, next.position, 30, 100);
  assert.equal(idle.events.length, 0);
  assert.deepEqual(idle.position, throughVersionstamp(4));
});

Deno.test("Client.watch: initial state, changes in order, resume after a versionstamp, compaction", async () => {
  const n = await startFakeNode(1, { limits: { watchHistoryEvents: 5 } });
  const kv = await Client.connect({ endpoints: [n.address] });
  const ac = new AbortController();
  try {
    await kv.put("w/a", "0");
    const it = kv.watch({ prefixes: ["w/"] }, { waitMs: 200, signal: ac.signal });
    const first = await it.next();
    const initial = first.value as Extract<WatchMessage, { type: "initial" }>;
    assert.equal(initial.type, "initial");
    assert.deepEqual(initial.entries.map((e) => dec.decode(e.value!)), ["0"]);
    await kv.put("w/a", "1");
    await kv.atomic().set("w/b", "2").delete("w/a").commit();
    await kv.put("elsewhere", "x");
    const m1 = (await it.next()).value as Extract<WatchMessage, { type: "change" }>;
    const m2 = (await it.next()).value as Extract<WatchMessage, { type: "change" }>;
    assert.deepEqual(m1.changes.map((c) => dec.decode(c.value!)), ["1"]);
    assert.deepEqual(m2.changes.map((c) => [dec.decode(c.key), c.value && dec.decode(c.value)]), [
      ["w/b", "2"],
      ["w/a", null],
    ]);
    assert.ok(m2.versionstamp > m1.versionstamp);
    ac.abort();
    await it.return(undefined);
    // Resume after m1: exactly m2 again, no initial state.
    const ac2 = new AbortController();
    const again = kv.watch({ prefixes: ["w/"] }, { after: m1.versionstamp, signal: ac2.signal });
    const r = (await again.next()).value as WatchMessage;
    assert.equal(r.type, "change");
    assert.equal(r.versionstamp, m2.versionstamp);
    ac2.abort();
    await again.return(undefined);
    // After more commits than the history keeps, resuming from the start is compacted.
    for (let i = 0; i < 10; i++) await kv.put(`w/${i}`, "v");
    const old = kv.watch({ prefixes: ["w/"] }, { after: initial.versionstamp });
    await assert.rejects(() => old.next(), WatchCompactedError);
  } finally {
    ac.abort();
    await kv.close();
    await n.close();
  }
});

/** One Server-Sent Event as the tests read it. */
interface SseEvent {
  id?: string;
  event?: string;
  data?: unknown;
}

/** Reads a Server-Sent Events response until `enough` holds of what was read (or the stream
 * ends, or `ms` pass), then cancels it. Comments (keep-alives) are skipped. */
async function readSse(
  res: Response,
  enough: (out: SseEvent[]) => boolean,
  ms = 3000,
): Promise<SseEvent[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const out: SseEvent[] = [];
  const deadline = Date.now() + ms;
  while (!enough(out) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (block.startsWith(":")) continue;
      const ev: SseEvent = {};
      for (const line of block.split("\n")) {
        const [k, ...rest] = line.split(": ");
        const v = rest.join(": ");
        if (k === "id") ev.id = v;
        if (k === "event") ev.event = v;
        if (k === "data") ev.data = JSON.parse(v);
      }
      out.push(ev);
    }
  }
  await reader.cancel();
  return out;
}

Deno.test("HTTP /v1/watch streams Server-Sent Events with versionstamp ids; Last-Event-ID resumes", async () => {
  const n = await startFakeNode(1);
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  try {
    await n.service.put(b("s/1"), b("a"));
    const res = await handler(new Request("http://node/v1/watch?prefix=s/&wait_ms=100"));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const put = n.service.put(b("s/2"), b("b"));
    const evs = await readSse(res, (out) => out.length >= 2);
    await put;
    assert.equal(evs[0].event, "initial");
    assert.deepEqual((evs[0].data as { entries: { key: string }[] }).entries.map((e) => e.key), [
      "s/1",
    ]);
    assert.equal(evs[1].event, "change");
    assert.equal((evs[1].data as { changes: { value: string }[] }).changes[0].value, "b");
    // Resume with Last-Event-ID = the initial state's id: the change again, no initial state.
    const res2 = await handler(
      new Request("http://node/v1/watch?prefix=s/&wait_ms=100", {
        headers: { "last-event-id": evs[0].id! },
      }),
    );
    const evs2 = await readSse(res2, (out) => out.length >= 1);
    assert.deepEqual([evs2[0].event, evs2[0].id], ["change", evs[1].id]);
    const bad = await handler(new Request("http://node/v1/watch"));
    assert.equal(bad.status, 400);
    const badAfter = await handler(new Request("http://node/v1/watch?key=k&after=zz"));
    assert.equal(badAfter.status, 400);
  } finally {
    n.service.stopAccepting();
    await n.close();
  }
});

Deno.test("property: the packed history answers since() like a plain list of commits (random batches, bounds, selectors, max, resets)", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const prng = new Prng(seed);
    const rand = () => prng.float();
    const int = (n: number) => Math.floor(rand() * n);
    const limits = { maxEvents: 1 + int(12), maxBytes: 64 + int(600) };
    type RefCommit = { index: number; changes: KvChange[]; bytes: number };
    const fake = {
      appliedIndex: () => 0,
      appliedLastChange: () => undefined,
    } as unknown as MemoryStateMachine;
    const hub = new WatchHub(fake, limits);
    let ref: RefCommit[] = [];
    let floor = 0;
    let last = 0;
    let index = 0;
    const keys = ["a", "a/1", "a/2", "b", "bb", "c/x"];
    for (let step = 0; step < 80; step++) {
      if (int(25) === 0) {
        index += 1 + int(5);
        fake.onReset!(index);
        ref = [];
        floor = Math.max(floor, index);
        last = Math.max(last, index);
      } else {
        // One applied batch: 1-4 commits (entries) of 1-3 changes each, some entries without any.
        const batch: KvChange[] = [];
        for (let e = 1 + int(4); e > 0; e--) {
          index++;
          const vs = makeVersionstamp(index);
          const n = int(4);
          const commit: RefCommit = { index, changes: [], bytes: 0 };
          for (let i = 0; i < n; i++) {
            const key = b(keys[int(keys.length)]);
            let entry: KvEntry | null = null;
            if (int(4) !== 0) {
              entry = {
                key,
                value: b("v".repeat(int(80))),
                encoding: [ValueEncoding.BYTES, ValueEncoding.V8, ValueEncoding.LE64][int(3)],
                versionstamp: vs,
              };
              if (int(3) === 0) entry.expireAt = 1_700_000_000_000 + int(1000);
            }
            const c = { key, entry, versionstamp: vs };
            batch.push(c);
            commit.changes.push(c);
            commit.bytes += key.length + (entry?.value.length ?? 0) + 32;
          }
          if (n > 0) {
            ref.push(commit);
            last = Math.max(last, index);
          }
        }
        fake.onChanges!(batch);
        let bytes = ref.reduce((s, c) => s + c.bytes, 0);
        while (ref.length > 1 && (ref.length > limits.maxEvents || bytes > limits.maxBytes)) {
          const c = ref.shift()!;
          bytes -= c.bytes;
          floor = c.index;
        }
      }
      assert.equal(hub.size, ref.length, `seed ${seed} step ${step}: size`);
      assert.equal(hub.bytes, ref.reduce((s, c) => s + c.bytes, 0), `seed ${seed}: bytes`);
      assert.equal(versionstampHex(hub.floor), versionstampHex(throughVersionstamp(floor)));
      for (let q = 0; q < 4; q++) {
        const sel = int(2) === 0
          ? { keys: [b(keys[int(keys.length)])], prefixes: [] }
          : { keys: [], prefixes: [b(["", "a", "a/", "b", "c/"][int(5)])] };
        const after = Math.max(0, index - int(30));
        const max = 1 + int(4);
        if (after < floor) {
          assert.throws(() => hub.since(sel, after, max), WatchCompactedError);
          continue;
        }
        // The reference: matching commits after `after`; cut short at `max`, complete through
        // the commit before the first one left out.
        const sees = (k: Uint8Array) =>
          sel.keys.some((x) => dec.decode(x) === dec.decode(k)) ||
          sel.prefixes.some((p) => dec.decode(k).startsWith(dec.decode(p)));
        const want: { index: number; changes: KvChange[] }[] = [];
        let position = Math.max(after, last);
        let prev = after;
        for (const c of ref) {
          if (c.index <= after) continue;
          const changes = c.changes.filter((x) => sees(x.key));
          if (changes.length > 0) {
            if (want.length === max) {
              position = prev;
              break;
            }
            want.push({ index: c.index, changes });
          }
          prev = c.index;
        }
        const got = hub.since(sel, after, max);
        const ctx = `seed ${seed} step ${step} after ${after} max ${max}`;
        assert.equal(got.position, position, ctx);
        assert.deepEqual(
          got.events.map((e) => ({
            vs: versionstampHex(e.versionstamp),
            changes: e.changes.map((c) => ({ key: dec.decode(c.key), entry: c.entry })),
          })),
          want.map((w) => ({
            vs: versionstampHex(makeVersionstamp(w.index)),
            changes: w.changes.map((c) => ({ key: dec.decode(c.key), entry: c.entry })),
          })),
          ctx,
        );
      }
    }
  }
});

// Resuming after a write inside an entry (review of a9ea805): a poll or an SSE stream on a node
// that had not applied that entry yet delivered the whole entry when it arrived, including what
// came at or before the resume point; a resume at the history's floor entry was refused.

/** Applies `n` single puts of key "other" as entries 1..n. */
async function applyOthers(sm: MemoryStateMachine, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    await sm.apply([{ index: i, data: encodeCommand(putCommand(b("other"), b(String(i)))) }]);
  }
}

Deno.test("a poll after (10, 1) on a node still at 9 gets only the changes after (10, 1)", async () => {
  const sm = new MemoryStateMachine();
  const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
  await applyOthers(sm, 9);
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
  await applyOthers(sm, 9);
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

Deno.test("SSE resume with Last-Event-ID inside a batch entry on a lagging node repeats nothing", async () => {
  const sm = new MemoryStateMachine();
  const n = await startFakeNode(1, { sm });
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  try {
    await applyOthers(sm, 9);
    // On the node that served the first stream, entry 10 = [s/a, s/b, t/x]; the watch of s/
    // got one event with id (10, 1), the stamp of its last change.
    const lastEventId = versionstampHex(makeVersionstamp(10, 1));
    const res = await handler(
      new Request("http://node/v1/watch?prefix=s/&wait_ms=2000", {
        headers: { "last-event-id": lastEventId },
      }),
    );
    assert.equal(res.status, 200);
    // This node applies entry 10 only now.
    await sm.apply([{
      index: 10,
      data: encodeBatch([
        encodeCommand(putCommand(b("s/a"), b("1"))),
        encodeCommand(putCommand(b("s/b"), b("1"))),
        encodeCommand(putCommand(b("t/x"), b("1"))),
      ]),
    }]);
    await sm.apply([{ index: 11, data: encodeCommand(putCommand(b("s/c"), b("1"))) }]);
    const changes: string[] = [];
    await readSse(res, (out) => {
      const ev = out.at(-1);
      if (ev?.event === "change") {
        for (const c of (ev.data as { changes: { key: string }[] }).changes) changes.push(c.key);
      }
      return changes.includes("s/c");
    });
    assert.deepEqual(changes, ["s/c"], "s/a and s/b were delivered before the reconnect");
  } finally {
    n.service.stopAccepting();
    await n.close();
  }
});

Deno.test("SSE resume with Last-Event-ID of a single put on a lagging node repeats nothing (no batch entry)", async () => {
  const sm = new MemoryStateMachine();
  const n = await startFakeNode(1, { sm });
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  try {
    await applyOthers(sm, 9);
    // The stream on another node delivered the put at entry 10 (id (10, 0)), then broke.
    const res = await handler(
      new Request("http://node/v1/watch?prefix=s/&wait_ms=2000", {
        headers: { "last-event-id": versionstampHex(makeVersionstamp(10, 0)) },
      }),
    );
    await sm.apply([{ index: 10, data: encodeCommand(putCommand(b("s/a"), b("1"))) }]);
    await sm.apply([{ index: 11, data: encodeCommand(putCommand(b("s/c"), b("1"))) }]);
    const evs = await readSse(res, (out) => out.some((e) => e.event === "change"));
    const ids = evs.filter((e) => e.event === "change").map((e) => e.id);
    assert.deepEqual(ids, [versionstampHex(makeVersionstamp(11, 0))], "entry 10 again");
  } finally {
    n.service.stopAccepting();
    await n.close();
  }
});

// A resume inside the floor entry after a restart: the floor is then the applied index the node
// reopened at, and the position of that entry's last change was not known, so every resume
// inside it was refused (WatchCompactedError), also one after its last change, which the node
// can serve exactly. One that something of the entry follows must still be refused.
for (const kind of ["lsm", "simplefile"] as const) {
  Deno.test(`${kind}: after a restart, a resume inside the floor entry after its last change is served; one before it is compacted`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: "gokv-watch-restart-" });
    const open = () =>
      kind === "lsm" ? LsmStateMachine.open(dir) : SimpleFileStateMachine.open(dir);
    const limits = { maxEvents: 100, maxBytes: 1 << 20 };
    const put = (k: string, v: string) => encodeCommand(putCommand(b(k), b(v)));
    try {
      let sm: MemoryStateMachine | LsmStateMachine = await open();
      let hub = new WatchHub(sm, limits);
      await sm.apply([{ index: 1, data: put("other", "1") }]);
      // Entry 2 = [t/x, s/a, s/b]: a watch of s/ gets one event with id (2, 2), one of t/ one
      // with id (2, 0).
      await sm.apply([{
        index: 2,
        data: encodeBatch([put("t/x", "1"), put("s/a", "1"), put("s/b", "1")]),
      }]);
      const s = { keys: [], prefixes: [b("s/")] };
      const seen = hub.since(s, 1, 100).events;
      assert.deepEqual(seen.map((e) => versionstampHex(e.versionstamp)), [
        versionstampHex(makeVersionstamp(2, 2)),
      ]);
      await sm.close();

      sm = await open();
      hub = new WatchHub(sm, limits);
      assert.equal(versionstampHex(hub.floor), versionstampHex(throughVersionstamp(2)));
      await sm.apply([{ index: 3, data: put("s/c", "1") }]);
      // After (2, 2), the entry's last change: exactly the later commits.
      const p = await hub.poll(s, makeVersionstamp(2, 2), 0, 100);
      assert.deepEqual(
        p.events.map((e) => e.changes.map((c) => dec.decode(c.key))),
        [["s/c"]],
      );
      assert.equal(versionstampHex(p.position), versionstampHex(throughVersionstamp(3)));
      // After (2, 0): s/a and s/b of entry 2 follow and are held nowhere.
      await assert.rejects(
        hub.poll({ keys: [], prefixes: [b("")] }, makeVersionstamp(2, 0), 0, 100),
        WatchCompactedError,
      );
      await sm.close();
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test("after a restart on a state of an earlier version (the floor entry's last change not recorded), a resume inside the floor entry is compacted", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-watch-restart-" });
  const put = (k: string) => encodeCommand(putCommand(b(k), b("1")));
  try {
    let sm = await SimpleFileStateMachine.open(dir);
    await sm.apply([{ index: 1, data: encodeBatch([put("s/a"), put("s/b")]) }]);
    await sm.close();
    // The state file as an earlier version wrote it: no appliedLastChange.
    const file = `${dir}/sm-state.json`;
    const st = JSON.parse(Deno.readTextFileSync(file));
    assert.equal(st.appliedLastChange, 1);
    delete st.appliedLastChange;
    Deno.writeTextFileSync(file, JSON.stringify(st));
    sm = await SimpleFileStateMachine.open(dir);
    const hub = new WatchHub(sm, { maxEvents: 100, maxBytes: 1 << 20 });
    const all = { keys: [], prefixes: [b("")] };
    await assert.rejects(hub.poll(all, makeVersionstamp(1, 1), 0, 100), WatchCompactedError);
    // A resume through the entry is served as before.
    await sm.apply([{ index: 2, data: put("s/c") }]);
    const p = await hub.poll(all, throughVersionstamp(1), 0, 100);
    assert.deepEqual(p.events.map((e) => e.changes.map((c) => dec.decode(c.key))), [["s/c"]]);
    await sm.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a one-node lsm server restarted after a write: a watch resuming after that write (the floor entry's last change) continues, repeating and missing nothing", async () => {
  const ls = Array.from({ length: 3 }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const [peer, client, http] = ls.map((l) => `127.0.0.1:${l.addr.port}`);
  for (const l of ls) l.close();
  const config = defaultConfig([{ id: 1, peer, client, http }]);
  config.storage = "lsm";
  config.dataDir = Deno.makeTempDirSync({ prefix: "gokv-watch-restart-server-" });
  Object.assign(config.raft, { tickMs: 10, heartbeatMs: 30, electionMs: 200 });
  let srv = await startServer(config, 1, { logger: nullLogger });
  let kv: Client | undefined;
  const ac = new AbortController();
  try {
    kv = await Client.connect({ endpoints: [client] });
    // The cluster id's entry comes first: the write is the last entry the node applies.
    const deadline = Date.now() + 10_000;
    while (srv.status().clusterId === null) {
      assert.ok(Date.now() < deadline, "no cluster id after 10 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const w = await kv.atomic().set("w/a", "1").commit();
    assert.ok(w.ok);
    await kv.close();
    await srv.close();

    srv = await startServer(config, 1, { logger: nullLogger });
    // The floor is the write's entry (a resume inside it is what this checks), and the SSE
    // stream resumes after the write (410 watch_compacted before).
    const res = await fetch(`http://${http}/v1/watch?prefix=w/&wait_ms=2000`, {
      headers: { "last-event-id": w.versionstamp },
    });
    await res.body?.cancel();
    assert.equal(res.status, 200);
    const floor = throughVersionstamp(versionstampIndex(parseVersionstamp(w.versionstamp)));
    assert.equal(res.headers.get("x-gokv-watch-floor"), versionstampHex(floor));
    kv = await Client.connect({ endpoints: [client] });
    const it = kv.watch({ prefixes: ["w/"] }, {
      after: w.versionstamp,
      waitMs: 200,
      signal: ac.signal,
    });
    const next = it.next();
    await kv.put("w/b", "2");
    const m = (await next).value as Extract<WatchMessage, { type: "change" }>;
    assert.equal(m.type, "change");
    assert.deepEqual(m.changes.map((c) => dec.decode(c.key)), ["w/b"]);
  } finally {
    ac.abort();
    await kv?.close();
    await srv.close();
    Deno.removeSync(config.dataDir, { recursive: true });
  }
});

Deno.test("an SSE watch with wait_ms=0 leaves the event loop free: timers run while it streams keepalives", async () => {
  const n = await startFakeNode(1);
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  try {
    const res = await handler(new Request("http://node/v1/watch?prefix=s/&wait_ms=0"));
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    // Before, the stream's loop never waited for a timer: this read loop got chunks at once
    // forever and the interval never fired (the deadline is checked by Date.now, not a timer).
    const deadline = Date.now() + 3_000;
    while (ticks < 3 && Date.now() < deadline) await reader.read();
    await reader.cancel();
    assert.ok(ticks >= 3, `${ticks} timer ticks in 3 s of streaming`);
  } finally {
    clearInterval(iv);
    n.service.stopAccepting();
    await n.close();
  }
});

/** A sample of the node's metrics: the value of `name` (0 when absent). */
async function metricValue(n: { metrics: { scrape(): Promise<string> } }, name: string) {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(await n.metrics.scrape());
  return m ? Number(m[1]) : 0;
}

Deno.test("an SSE watch whose reader stops reading: the node's queue for it stays bounded, the stream ends with watch_slow_reader, Last-Event-ID resumes; writes and other watchers go on", async () => {
  const bound = 256 * 1024;
  const stallMs = 1_000;
  const n = await startFakeNode(1, {
    limits: { sendBufferBytes: bound, requestTimeoutMs: stallMs } as Record<string, number>,
  });
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  const value = "v".repeat(32 * 1024);
  const puts = 256; // 8 MiB of values, within the history's 16 MiB
  try {
    // The slow reader: never reads its body (until the end of the test).
    const slow = await handler(new Request("http://node/v1/watch?prefix=w/&wait_ms=100"));
    assert.equal(slow.status, 200);
    // Another watcher that reads: it gets every change while the slow one stalls.
    const fast = await handler(new Request("http://node/v1/watch?prefix=w/&wait_ms=100"));
    const fastRead = readSse(
      fast,
      (out) => out.filter((e) => e.event === "change").length >= puts,
      20_000,
    );
    let maxQueued = 0;
    for (let i = 0; i < puts; i++) {
      await n.service.put(b(`w/${String(i).padStart(4, "0")}`), b(value));
      if (i % 16 === 15) {
        maxQueued = Math.max(maxQueued, await metricValue(n, "gokv_watch_buffered_bytes"));
      }
    }
    const fastEvents = await fastRead;
    assert.equal(fastEvents.filter((e) => e.event === "change").length, puts);
    // The slow stream is ended once its reader took nothing for the stall time at the bound.
    const deadline = Date.now() + 10_000;
    while (
      Date.now() < deadline && await metricValue(n, "gokv_watch_slow_readers_total") < 1
    ) await new Promise((r) => setTimeout(r, 20));
    maxQueued = Math.max(maxQueued, await metricValue(n, "gokv_watch_buffered_bytes"));
    // Now read what the node had queued for it: every event up to the bound, then the error.
    const reader = slow.body!.getReader();
    let received = 0;
    const chunks: Uint8Array[] = [];
    const readDeadline = Date.now() + 10_000;
    while (Date.now() < readDeadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        reader.read(),
        new Promise<undefined>((res) => timer = setTimeout(() => res(undefined), 2_000)),
      ]);
      clearTimeout(timer);
      if (r === undefined || r.done) break;
      received += r.value.length;
      chunks.push(r.value);
      if (received > 64 * 1024 * 1024) break;
    }
    await reader.cancel().catch(() => {});
    const text = dec.decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    const blocks = text.split("\n\n").filter((t) => t !== "" && !t.startsWith(":"));
    const events = blocks.map((block) => {
      const ev: SseEvent = {};
      for (const line of block.split("\n")) {
        const [k, ...rest] = line.split(": ");
        if (k === "id") ev.id = rest.join(": ");
        if (k === "event") ev.event = rest.join(": ");
        if (k === "data") ev.data = JSON.parse(rest.join(": "));
      }
      return ev;
    });
    const changes = events.filter((e) => e.event === "change");
    const oneEvent = value.length + 1024;
    assert.ok(
      received <= bound + 2 * oneEvent,
      `the slow reader's stream held ${received} bytes (${changes.length} of ${puts} changes), ` +
        `bound ${bound}; last event: ${events.at(-1)?.event}`,
    );
    assert.equal(events.at(-1)?.event, "error");
    assert.equal((events.at(-1)!.data as { error: string }).error, "watch_slow_reader");
    assert.ok(changes.length > 0 && changes.length < puts);
    assert.ok(maxQueued > 0 && maxQueued <= bound + oneEvent, `queued up to ${maxQueued}`);
    // Nothing is left queued, and the stream is gone.
    assert.equal(await metricValue(n, "gokv_watch_buffered_bytes"), 0);
    // Resuming after the last change received continues with the next write, through the last.
    const lastId = changes.at(-1)!.id!;
    const resumed = await handler(
      new Request("http://node/v1/watch?prefix=w/&wait_ms=100", {
        headers: { "last-event-id": lastId },
      }),
    );
    assert.equal(resumed.status, 200);
    const rest = (await readSse(
      resumed,
      (out) => out.filter((e) => e.event === "change").length >= puts - changes.length,
      10_000,
    )).filter((e) => e.event === "change");
    const keyOf = (e: SseEvent) => (e.data as { changes: { key: string }[] }).changes[0].key;
    assert.deepEqual(
      [...changes, ...rest].map(keyOf),
      Array.from({ length: puts }, (_, i) => `w/${String(i).padStart(4, "0")}`),
    );
  } finally {
    n.service.stopAccepting();
    await n.close();
  }
});

Deno.test("the client port: a client that pipelines reads and never reads the responses is no longer served at send_buffer_bytes, then disconnected; other clients are served", async () => {
  const stallMs = 1_000;
  const n = await startFakeNode(1, {
    limits: { sendBufferBytes: 256 * 1024, requestTimeoutMs: stallMs } as Record<string, number>,
  });
  const big = new Uint8Array(256 * 1024).fill(7);
  await n.service.put(b("big"), big);
  const [host, port] = n.address.split(":");
  const conn = await Deno.connect({ hostname: host, port: Number(port) });
  let other: Client | undefined;
  try {
    // Each batch: a read of the 256 KiB value (its response is what piles up) and one of an
    // absent 60 KiB key (a small response; it fills the request direction once the node stops
    // reading).
    const batch = new Uint8Array([
      ...encodeRequest({ op: Op.Get, id: 1, key: b("big"), consistency: Consistency.Serializable }),
      ...encodeRequest({
        op: Op.Get,
        id: 2,
        key: new Uint8Array(60 * 1024).fill(0x61),
        consistency: Consistency.Serializable,
      }),
    ]);
    // Bounded for the run before the fix, which buffered every response (256 MiB).
    const maxBatches = 1024;
    let batches = 0;
    let failed: unknown;
    const deadline = Date.now() + 20_000;
    while (batches < maxBatches && Date.now() < deadline) {
      try {
        let off = 0;
        while (off < batch.length) off += await conn.write(batch.subarray(off));
      } catch (e) {
        failed = e;
        break;
      }
      batches++;
    }
    assert.ok(
      failed !== undefined,
      `the node kept reading: ${batches} batches (${batches / 4} MiB of responses) written`,
    );
    // Another client is served meanwhile.
    other = await Client.connect({ endpoints: [n.address] });
    assert.equal((await other.get("big"))?.length, big.length);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
    await other?.close();
    n.service.stopAccepting();
    await n.close();
  }
});

Deno.test("over a real HTTP port: an SSE reader that never reads its socket leaves the node's queue bounded and is ended", async () => {
  const bound = 256 * 1024;
  const n = await startFakeNode(1, {
    limits: {
      sendBufferBytes: bound,
      requestTimeoutMs: 1_000,
      watchHistoryBytes: 128 * 1024 * 1024,
    } as Record<string, number>,
  });
  const http = new HttpListener({
    listen: "127.0.0.1:0",
    handler: createHttpHandler(n.service, { metrics: n.metrics }),
    logger: nullLogger,
    limits: n.service.limits,
  });
  const addr = await http.start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
  try {
    await conn.write(b(`GET /v1/watch?prefix=w/&wait_ms=100 HTTP/1.1\r\nhost: node\r\n\r\n`));
    const deadline0 = Date.now() + 5_000;
    while (Date.now() < deadline0 && await metricValue(n, "gokv_watch_streams") < 1) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await metricValue(n, "gokv_watch_streams"), 1);
    // 64 MiB of changes: more than the kernel's socket buffers on the way can take.
    const value = new Uint8Array(256 * 1024).fill(0x76);
    let maxQueued = 0;
    for (let i = 0; i < 256; i++) {
      await n.service.put(b(`w/${i}`), value);
      maxQueued = Math.max(maxQueued, await metricValue(n, "gokv_watch_buffered_bytes"));
    }
    const deadline = Date.now() + 10_000;
    while (
      Date.now() < deadline && await metricValue(n, "gokv_watch_slow_readers_total") < 1
    ) {
      maxQueued = Math.max(maxQueued, await metricValue(n, "gokv_watch_buffered_bytes"));
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await metricValue(n, "gokv_watch_slow_readers_total"), 1);
    // One event is ~350 KiB of JSON here: the bound plus one event.
    assert.ok(maxQueued <= bound + 400 * 1024, `queued up to ${maxQueued}`);
    // Its reader still takes nothing: the ended stream is dropped, its queue freed.
    const dropped = Date.now() + 10_000;
    while (Date.now() < dropped && await metricValue(n, "gokv_watch_streams") > 0) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await metricValue(n, "gokv_watch_streams"), 0);
    assert.equal(await metricValue(n, "gokv_watch_buffered_bytes"), 0);
  } finally {
    conn.close();
    await http.shutdown();
    n.service.stopAccepting();
    await n.close();
  }
});
