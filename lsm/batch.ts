/**
 * Write-batch encoding: the payload of one WAL record. An atomic group of puts
 * and deletes sharing consecutive sequence numbers starting at `seq`.
 *
 * Layout: seq u64 BE | count u32 BE | count × (kind u8 | varint keyLen | key |
 * [varint valueLen | value] when kind = put).
 * @module
 */
import {
  getVarint,
  putVarint,
  readU32,
  readU64,
  varintLength,
  varintOut,
  writeU32,
  writeU64,
} from "./bytes.ts";
import { KIND_DELETE, KIND_PUT } from "./internal_key.ts";

/** Size of the batch header. */
export const BATCH_HEADER = 12;

/** One decoded operation. */
export interface BatchOp {
  kind: number;
  key: Uint8Array;
  value: Uint8Array;
}

/** Thrown by {@linkcode decodeBatch} on malformed input (callers wrap it into CorruptionError). */
export class BatchFormatError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "BatchFormatError";
  }
}

const EMPTY: Uint8Array = new Uint8Array(0);

/** Exact encoded size of one op. */
export function opSize(kind: number, key: Uint8Array, value: Uint8Array | undefined): number {
  let n = 1 + varintLength(key.length) + key.length;
  if (kind === KIND_PUT) n += varintLength(value!.length) + value!.length;
  return n;
}

/** Writes the header at `off`. */
export function writeBatchHeader(buf: Uint8Array, off: number, seq: number, count: number): void {
  writeU64(buf, off, seq);
  writeU32(buf, off + 8, count);
}

/** Writes one op at `off`; returns the new offset. */
export function writeOp(
  buf: Uint8Array,
  off: number,
  kind: number,
  key: Uint8Array,
  value: Uint8Array | undefined,
): number {
  buf[off++] = kind;
  off = putVarint(buf, off, key.length);
  buf.set(key, off);
  off += key.length;
  if (kind === KIND_PUT) {
    off = putVarint(buf, off, value!.length);
    buf.set(value!, off);
    off += value!.length;
  }
  return off;
}

/** Decoded batch header + ops (ops are views into the input). */
export interface DecodedBatch {
  seq: number;
  ops: BatchOp[];
}

/** Decodes a batch; throws BatchFormatError when malformed. */
export function decodeBatch(data: Uint8Array): DecodedBatch {
  if (data.length < BATCH_HEADER) throw new BatchFormatError("batch shorter than header");
  const seq = readU64(data, 0);
  const count = readU32(data, 8);
  const ops: BatchOp[] = [];
  let off = BATCH_HEADER;
  const end = data.length;
  for (let i = 0; i < count; i++) {
    if (off >= end) throw new BatchFormatError("batch truncated");
    const kind = data[off++];
    if (kind !== KIND_PUT && kind !== KIND_DELETE) throw new BatchFormatError(`bad kind ${kind}`);
    if (!getVarint(data, off, end)) throw new BatchFormatError("bad key length");
    let len = varintOut.value;
    off = varintOut.offset;
    if (off + len > end) throw new BatchFormatError("key past end");
    const key = data.subarray(off, off + len);
    off += len;
    let value = EMPTY;
    if (kind === KIND_PUT) {
      if (!getVarint(data, off, end)) throw new BatchFormatError("bad value length");
      len = varintOut.value;
      off = varintOut.offset;
      if (off + len > end) throw new BatchFormatError("value past end");
      value = data.subarray(off, off + len);
      off += len;
    }
    ops.push({ kind, key, value });
  }
  if (off !== end) throw new BatchFormatError("trailing bytes after batch");
  return { seq, ops };
}
