/**
 * The record format of the segmented Raft log (the lsm backend's write-ahead log), shared by the
 * writer and the reader.
 *
 * A segment file is the 8-byte magic `GKVWAL01` followed by records:
 *
 * ```
 * u32 crc32c   of the bytes from `length` to the end of the payload
 * u32 length   of the payload
 * u8  type     RecordType
 * payload
 * ```
 *
 * Payloads (integers little-endian, ids as uvarints):
 * - Entry:     u64 index, u64 term, u8 entry type, data (rest of the payload)
 * - HardState: u64 term, u64 vote, u64 commit
 * - Snapshot:  u8 keep (1 = entries after it were kept), snapshot meta
 * - Header:    snapshot meta, hard state (first record of every segment)
 *
 * where snapshot meta is u64 index, u64 term and the four conf lists (uvarint count, uvarint ids).
 *
 * @module
 */
import type { ConfState, Entry, EntryType, HardState, SnapshotMeta } from "../raft/types.ts";
import { ByteReader, type ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";

/** The segment file magic. */
export const SEGMENT_MAGIC: Uint8Array = new TextEncoder().encode("GKVWAL01");

/** Bytes before a record's payload. */
export const RECORD_HEADER_SIZE = 9;

/** The largest payload accepted (anything larger is garbage). */
export const MAX_RECORD_PAYLOAD = 256 * 1024 * 1024;

/** Record types. */
export enum RecordType {
  /** A log entry. */
  Entry = 1,
  /** A hard state. */
  HardState = 2,
  /** A snapshot installed or created. */
  Snapshot = 3,
  /** The state at the start of a segment. */
  Header = 4,
}

/** A decoded record. */
export type LogRecord =
  | { type: RecordType.Entry; entry: Entry }
  | { type: RecordType.HardState; hs: HardState }
  | { type: RecordType.Snapshot; meta: SnapshotMeta; keep: boolean }
  | { type: RecordType.Header; meta: SnapshotMeta; hs: HardState };

function writeIds(w: ByteWriter, ids: number[]): void {
  w.uvarint(ids.length);
  for (const id of ids) w.uvarint(id);
}

function readIds(r: ByteReader): number[] {
  const n = r.uvarint();
  if (n > r.remaining) throw new RangeError("bad id count");
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.uvarint());
  return out;
}

function writeMeta(w: ByteWriter, m: SnapshotMeta): void {
  w.u64(m.index);
  w.u64(m.term);
  writeIds(w, m.conf.voters);
  writeIds(w, m.conf.votersOutgoing);
  writeIds(w, m.conf.learners);
  writeIds(w, m.conf.learnersNext);
}

function readMeta(r: ByteReader): SnapshotMeta {
  const index = r.u64();
  const term = r.u64();
  const conf: ConfState = {
    voters: readIds(r),
    votersOutgoing: readIds(r),
    learners: readIds(r),
    learnersNext: readIds(r),
  };
  return { index, term, conf };
}

function writeHs(w: ByteWriter, hs: HardState): void {
  w.u64(hs.term);
  w.u64(hs.vote);
  w.u64(hs.commit);
}

function readHs(r: ByteReader): HardState {
  return { term: r.u64(), vote: r.u64(), commit: r.u64() };
}

/** Appends one framed record to `w`; `body` writes the payload. */
function frame(w: ByteWriter, type: RecordType, body: (w: ByteWriter) => void): void {
  const start = w.length;
  w.u32(0);
  w.u32(0);
  w.u8(type);
  body(w);
  const len = w.length - start - RECORD_HEADER_SIZE;
  w.patchU32(start + 4, len);
  const v = w.view();
  w.patchU32(start, crc32c(v, 0, start + 4, v.length));
}

/** Appends an Entry record. */
export function writeEntryRecord(w: ByteWriter, e: Entry): void {
  frame(w, RecordType.Entry, (w) => {
    w.u64(e.index);
    w.u64(e.term);
    w.u8(e.type);
    w.raw(e.data);
  });
}

/** Appends a HardState record. */
export function writeHardStateRecord(w: ByteWriter, hs: HardState): void {
  frame(w, RecordType.HardState, (w) => writeHs(w, hs));
}

/** Appends a Snapshot record. */
export function writeSnapshotRecord(w: ByteWriter, meta: SnapshotMeta, keep: boolean): void {
  frame(w, RecordType.Snapshot, (w) => {
    w.u8(keep ? 1 : 0);
    writeMeta(w, meta);
  });
}

/** Appends a Header record. */
export function writeHeaderRecord(w: ByteWriter, meta: SnapshotMeta, hs: HardState): void {
  frame(w, RecordType.Header, (w) => {
    writeMeta(w, meta);
    writeHs(w, hs);
  });
}

/** The outcome of decoding at one offset. */
export type DecodeResult =
  | { status: "ok"; record: LogRecord; next: number }
  | { status: "eof" }
  | { status: "bad"; reason: "truncated" | "length" | "checksum" | "payload"; next: number };

/**
 * Decodes the record at `off`. `eof` when `off` is the end; `bad` when the bytes there are not a
 * complete valid record (`next` is where the following record would start if the length field is
 * trustworthy, or -1). Never throws.
 */
export function decodeRecordAt(buf: Uint8Array, off: number): DecodeResult {
  if (off >= buf.length) return { status: "eof" };
  if (buf.length - off < RECORD_HEADER_SIZE) {
    return { status: "bad", reason: "truncated", next: -1 };
  }
  const dv = new DataView(buf.buffer, buf.byteOffset + off, RECORD_HEADER_SIZE);
  const crc = dv.getUint32(0, true);
  const len = dv.getUint32(4, true);
  if (len > MAX_RECORD_PAYLOAD) return { status: "bad", reason: "length", next: -1 };
  const end = off + RECORD_HEADER_SIZE + len;
  if (end > buf.length) return { status: "bad", reason: "truncated", next: -1 };
  if (crc32c(buf, 0, off + 4, end) !== crc) return { status: "bad", reason: "checksum", next: end };
  const type = buf[off + 8];
  const r = new ByteReader(buf, "log record", off + RECORD_HEADER_SIZE, end);
  try {
    let record: LogRecord;
    switch (type) {
      case RecordType.Entry: {
        const index = r.u64();
        const term = r.u64();
        const etype = r.u8() as EntryType;
        if (etype !== 0 && etype !== 1) throw new RangeError("entry type");
        record = { type, entry: { index, term, type: etype, data: r.raw(r.remaining).slice() } };
        break;
      }
      case RecordType.HardState:
        record = { type, hs: readHs(r) };
        break;
      case RecordType.Snapshot: {
        const keep = r.u8();
        if (keep > 1) throw new RangeError("keep flag");
        record = { type, keep: keep === 1, meta: readMeta(r) };
        break;
      }
      case RecordType.Header:
        record = { type, meta: readMeta(r), hs: readHs(r) };
        break;
      default:
        return { status: "bad", reason: "payload", next: end };
    }
    if (r.remaining !== 0) return { status: "bad", reason: "payload", next: end };
    return { status: "ok", record, next: end };
  } catch {
    return { status: "bad", reason: "payload", next: end };
  }
}

/** The outcome of reading a whole segment. */
export interface SegmentScan {
  /** The valid records, in order. */
  records: LogRecord[];
  /** The offset just past the last valid record. */
  validEnd: number;
  /** Why reading stopped before the end of the buffer, if it did. */
  error?: { offset: number; reason: string; validAfter: boolean };
}

/**
 * Reads every record of a segment buffer (magic included). On the first bad record it stops and
 * reports whether a valid record follows it (`validAfter`: damage before the tail, i.e.
 * corruption) or not (a torn tail that can be cut off).
 */
export function scanSegment(buf: Uint8Array): SegmentScan {
  const records: LogRecord[] = [];
  if (buf.length < SEGMENT_MAGIC.length) {
    return { records, validEnd: 0, error: { offset: 0, reason: "magic", validAfter: false } };
  }
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) {
    if (buf[i] !== SEGMENT_MAGIC[i]) {
      return { records, validEnd: 0, error: { offset: 0, reason: "magic", validAfter: true } };
    }
  }
  let off = SEGMENT_MAGIC.length;
  for (;;) {
    const d = decodeRecordAt(buf, off);
    if (d.status === "eof") return { records, validEnd: off };
    if (d.status === "ok") {
      records.push(d.record);
      off = d.next;
      continue;
    }
    return {
      records,
      validEnd: off,
      error: { offset: off, reason: d.reason, validAfter: validRecordAfter(buf, off + 1) },
    };
  }
}

/**
 * True when a valid record starts anywhere at or after `from`: what tells damage in the middle of
 * a segment (acknowledged data follows, so it must not be cut off) from a torn tail.
 */
export function validRecordAfter(buf: Uint8Array, from: number): boolean {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let p = from; p + RECORD_HEADER_SIZE <= buf.length; p++) {
    const type = buf[p + 8];
    if (type < RecordType.Entry || type > RecordType.Header) continue;
    const len = dv.getUint32(p + 4, true);
    if (len > buf.length - p - RECORD_HEADER_SIZE) continue;
    if (decodeRecordAt(buf, p).status === "ok") return true;
  }
  return false;
}
