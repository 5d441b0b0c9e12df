import assert from "node:assert/strict";
import type { FlushRequest, MergeRequest } from "./compaction_worker.ts";
import { Memtable } from "./memtable.ts";
import { KIND_PUT } from "./internal_key.ts";
import { resolveOptions } from "./options.ts";
import { fromWire, toWire } from "./worker_wire.ts";
import { b } from "./testutil_test.ts";

// node:worker_threads posts typed arrays over SharedArrayBuffers very slowly (seconds for a
// memtable), so no such view may be in a posted request: only bare shared buffers.
function sharedViews(v: unknown, seen = new Set<unknown>()): number {
  if (v === null || typeof v !== "object" || seen.has(v)) return 0;
  seen.add(v);
  if (ArrayBuffer.isView(v)) return v.buffer instanceof SharedArrayBuffer ? 1 : 0;
  let n = 0;
  for (const x of Object.values(v)) n += sharedViews(x, seen);
  return n;
}

Deno.test("a flush request crosses to the worker with its shared memtable arrays as bare buffers, rebuilt in place", () => {
  const m = new Memtable(1024, 1 << 16, true);
  m.add(1, KIND_PUT, b("k"), b("v"));
  const st = m.exportState();
  const req: FlushRequest = {
    type: "flush",
    id: 1,
    dir: "/d",
    path: "/d/000001.sst",
    number: 1,
    opts: resolveOptions(),
    mem: st,
  };
  assert.equal(sharedViews(req), 2);
  const wire = toWire(req);
  assert.equal(sharedViews(wire), 0);
  const back = structuredClone(wire) as Record<string, unknown>;
  const r = fromWire(back) as FlushRequest;
  assert.ok(r.mem.arena.buffer instanceof SharedArrayBuffer);
  assert.equal(r.mem.arena.length, st.arena.length);
  assert.equal(r.mem.nodes.length, st.nodes.length);
  // Same memory: a write through the rebuilt view is seen by the original.
  r.mem.arena[0] ^= 0xff;
  assert.equal(r.mem.arena[0], st.arena[0]);
  assert.equal(r.mem.arenaLen, st.arenaLen);
});

Deno.test("a merge request's shared I/O signal crosses as a bare buffer", () => {
  const sig = new Int32Array(new SharedArrayBuffer(8));
  const req = {
    type: "merge",
    id: 2,
    dir: "/d",
    compaction: { level: 0, inputs: [], overlaps: [], trivialMove: false },
    opts: resolveOptions(),
    smallestSnapshot: 0,
    levels: [],
    ioSignal: sig,
  } as unknown as MergeRequest;
  const wire = toWire(req);
  assert.equal(sharedViews(wire), 0);
  const r = fromWire(structuredClone(wire) as Record<string, unknown>) as MergeRequest;
  Atomics.store(r.ioSignal!, 1, 1);
  assert.equal(Atomics.load(sig, 1), 1);
});
