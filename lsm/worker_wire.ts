/**
 * How requests cross to the background worker (compaction_worker.ts): shared typed arrays
 * travel as their SharedArrayBuffer and are rebuilt on the other side.
 * @module
 */
import type { FlushRequest, MergeRequest } from "./compaction_worker.ts";

/** A typed array over a SharedArrayBuffer as it crosses to the worker: the buffer alone. */
interface SharedView {
  buffer: SharedArrayBuffer;
  byteOffset: number;
  length: number;
}

function toShared(a: Uint8Array | Int32Array): SharedView | Uint8Array | Int32Array {
  if (!(a.buffer instanceof SharedArrayBuffer)) return a;
  return { buffer: a.buffer, byteOffset: a.byteOffset, length: a.length };
}

function isShared(a: unknown): a is SharedView {
  return (a as SharedView).buffer instanceof SharedArrayBuffer && !ArrayBuffer.isView(a);
}

/**
 * A request as posted to the worker. node:worker_threads (in Deno 2.9) posts a typed array
 * over a SharedArrayBuffer very slowly (~0.7 s and ~70 MiB of garbage for an 8 MiB memtable
 * arena) but a bare SharedArrayBuffer at once, so shared views cross as their buffer and are
 * rebuilt by {@linkcode fromWire}.
 */
export function toWire(req: FlushRequest | MergeRequest): unknown {
  if (req.type === "flush") {
    return {
      ...req,
      mem: { ...req.mem, arena: toShared(req.mem.arena), nodes: toShared(req.mem.nodes) },
    };
  }
  return req.ioSignal ? { ...req, ioSignal: toShared(req.ioSignal) } : req;
}

/** The request {@linkcode toWire} posted. */
export function fromWire(m: Record<string, unknown>): FlushRequest | MergeRequest {
  const bytes = (a: unknown) =>
    isShared(a) ? new Uint8Array(a.buffer, a.byteOffset, a.length) : a as Uint8Array;
  const ints = (a: unknown) =>
    isShared(a) ? new Int32Array(a.buffer, a.byteOffset, a.length) : a as Int32Array;
  if (m.type === "flush") {
    const mem = m.mem as Record<string, unknown>;
    return {
      ...m,
      mem: { ...mem, arena: bytes(mem.arena), nodes: ints(mem.nodes) },
    } as unknown as FlushRequest;
  }
  const r = m as unknown as MergeRequest;
  return r.ioSignal ? { ...r, ioSignal: ints(r.ioSignal) } : r;
}
