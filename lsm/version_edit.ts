/**
 * Version edits: the records of the MANIFEST log (framed by log_format.ts).
 * An edit is a sequence of tagged fields:
 * 1 logNumber v | 2 nextFileNumber v | 3 lastSequence v | 4 addWal v |
 * 5 deletedFile (level v, number v) |
 * 6 newFile (level v, number v, size v, smallest lenbytes, largest lenbytes)
 * where v is a varint and lenbytes is a varint length then bytes.
 * @module
 */
import { ByteWriter, getVarint, varintOut } from "./bytes.ts";
import { TRAILER } from "./internal_key.ts";

/** Metadata of one live table file. */
export interface FileMeta {
  number: number;
  size: number;
  /** Smallest internal key. */
  smallest: Uint8Array;
  /** Largest internal key. */
  largest: Uint8Array;
}

/** A change to the version state. */
export interface VersionEdit {
  /** WALs numbered below this are obsolete (their data is in tables). */
  logNumber?: number;
  nextFileNumber?: number;
  lastSequence?: number;
  /** New WAL files created. */
  addWals?: number[];
  deletedFiles?: Array<[level: number, number: number]>;
  newFiles?: Array<[level: number, meta: FileMeta]>;
}

/** Number of levels. */
export const NUM_LEVELS = 7;

/** Thrown by {@linkcode decodeEdit} on malformed input. */
export class EditFormatError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "EditFormatError";
  }
}

/** Encodes an edit. */
export function encodeEdit(e: VersionEdit): Uint8Array {
  const w = new ByteWriter(64);
  if (e.logNumber !== undefined) (w.u8(1), w.varint(e.logNumber));
  if (e.nextFileNumber !== undefined) (w.u8(2), w.varint(e.nextFileNumber));
  if (e.lastSequence !== undefined) (w.u8(3), w.varint(e.lastSequence));
  for (const n of e.addWals ?? []) (w.u8(4), w.varint(n));
  for (const [l, n] of e.deletedFiles ?? []) (w.u8(5), w.varint(l), w.varint(n));
  for (const [l, f] of e.newFiles ?? []) {
    w.u8(6);
    w.varint(l);
    w.varint(f.number);
    w.varint(f.size);
    w.lenBytes(f.smallest);
    w.lenBytes(f.largest);
  }
  return w.toBytes();
}

/** Decodes an edit; throws EditFormatError when malformed. */
export function decodeEdit(b: Uint8Array): VersionEdit {
  const e: VersionEdit = {};
  let off = 0;
  const end = b.length;
  const v = (): number => {
    if (!getVarint(b, off, end)) throw new EditFormatError(`bad varint at ${off}`);
    off = varintOut.offset;
    return varintOut.value;
  };
  const level = (): number => {
    const l = v();
    if (l >= NUM_LEVELS) throw new EditFormatError(`bad level ${l}`);
    return l;
  };
  const bytes = (): Uint8Array => {
    const n = v();
    if (off + n > end || n < TRAILER) throw new EditFormatError("bad key");
    const r = b.slice(off, off + n);
    off += n;
    return r;
  };
  while (off < end) {
    const tag = b[off++];
    switch (tag) {
      case 1:
        e.logNumber = v();
        break;
      case 2:
        e.nextFileNumber = v();
        break;
      case 3:
        e.lastSequence = v();
        break;
      case 4:
        (e.addWals ??= []).push(v());
        break;
      case 5: {
        const l = level();
        (e.deletedFiles ??= []).push([l, v()]);
        break;
      }
      case 6: {
        const l = level();
        const number = v();
        const size = v();
        const smallest = bytes();
        const largest = bytes();
        (e.newFiles ??= []).push([l, { number, size, smallest, largest }]);
        break;
      }
      default:
        throw new EditFormatError(`unknown tag ${tag}`);
    }
  }
  return e;
}
