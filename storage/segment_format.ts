/**
 * The record format of the segmented Raft log (the lsm backend's write-ahead log), shared by the
 * writer and the reader.
 *
 * A segment file (format v2) is the 8-byte magic `GKVWAL02` followed by batches, one per
 * `sync()` (one write, one fdatasync):
 *
 * ```
 * u32 crc32c   of the next 8 bytes (the header checksum)
 * u32 length   of the body
 * u32 crc32c   of the body
 * body         records: u8 type (RecordType), u32 payload length, payload
 * u8  0xb7     end marker
 * ```
 *
 * Record boundaries come only from headers whose checksum matched, never from the bytes inside a
 * body (entry data are client bytes and may hold anything, encoded records included). A batch is
 * whole or bad; on open, a bad last batch is a torn tail only when it has the shape of an
 * interrupted write (cut short, a zeroed end or a zeroed page, nothing written after it) — see
 * {@link scanSegment}. v1 segments (`GKVWAL01`: records framed as `u32 crc32c(len..payload) |
 * u32 len | u8 type | payload`, no batches) are still read; the snapshot file keeps the v1 framing
 * for its meta record.
 *
 * Payloads (integers little-endian, ids as uvarints):
 * - Entry:     u64 index, u64 term, u8 entry type, data (rest of the payload)
 * - HardState: u64 term, u64 vote, u64 commit
 * - Snapshot:  u8 keep (1 = entries after it were kept), snapshot meta, [member contexts]
 * - Header:    snapshot meta, hard state, [member contexts] (first record of every segment)
 *
 * where snapshot meta is u64 index, u64 term and the four conf lists (uvarint count, uvarint ids),
 * and the member contexts, present only when the meta has some (so records written before they
 * existed still read, as metas without any), are uvarint n ≥ 1 then n × (uvarint id, uvarint
 * length, context bytes).
 *
 * @module
 */
import type {
  ConfState,
  Entry,
  EntryType,
  HardState,
  MemberContext,
  SnapshotMeta,
} from "../raft/types.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";

/** The segment file magic (format v2, written by this version). */
export const SEGMENT_MAGIC: Uint8Array = new TextEncoder().encode("GKVWAL02");

/** The magic of v1 segments (read, never written). */
export const SEGMENT_MAGIC_V1: Uint8Array = new TextEncoder().encode("GKVWAL01");

/** Bytes before a v1 record's payload (also the framing of the snapshot file's meta record). */
export const RECORD_HEADER_SIZE = 9;

/** Bytes before a v2 record's payload (type, length). */
export const V2_RECORD_HEADER_SIZE = 5;

/** Bytes of a v2 batch header (header checksum, body length, body checksum). */
export const BATCH_HEADER_SIZE = 12;

/** The byte that ends every v2 batch (never 0: a zeroed end is a torn write). */
export const BATCH_END = 0xb7;

/** A zero-filled aligned page of this size inside the last batch marks a torn write. */
export const TORN_PAGE = 4096;

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

/**
 * The optional tail of a Snapshot or Header record: `uvarint n | n × (uvarint id, uvarint len,
 * context)`, written only when the meta has member contexts (n ≥ 1), so a meta without any is
 * encoded as before they existed and a record written before them reads as none.
 */
function writeContexts(w: ByteWriter, m: SnapshotMeta): void {
  const cs = m.memberContexts;
  if (!cs || cs.length === 0) return;
  w.uvarint(cs.length);
  for (const c of cs) {
    w.uvarint(c.id);
    w.uvarint(c.context.length);
    w.raw(c.context);
  }
}

function readContexts(r: ByteReader, m: SnapshotMeta): void {
  if (r.remaining === 0) return;
  const n = r.uvarint();
  if (n === 0 || n > r.remaining) throw new RangeError("bad member context count");
  const out: MemberContext[] = [];
  for (let i = 0; i < n; i++) {
    const id = r.uvarint();
    const len = r.uvarint();
    if (len > r.remaining) throw new RangeError("bad member context length");
    out.push({ id, context: r.raw(len).slice() });
  }
  m.memberContexts = out;
}

function writeHs(w: ByteWriter, hs: HardState): void {
  w.u64(hs.term);
  w.u64(hs.vote);
  w.u64(hs.commit);
}

function readHs(r: ByteReader): HardState {
  return { term: r.u64(), vote: r.u64(), commit: r.u64() };
}

/** How records are framed: v1 records carry their own checksum; v2 records sit in a batch. */
type Framing = "v1" | "v2";

/** Appends one record to `w`; `body` writes the payload. */
function frame(
  w: ByteWriter,
  type: RecordType,
  framing: Framing,
  body: (w: ByteWriter) => void,
): void {
  const start = w.length;
  if (framing === "v2") {
    w.u8(type);
    w.u32(0);
    body(w);
    w.patchU32(start + 1, w.length - start - V2_RECORD_HEADER_SIZE);
    return;
  }
  w.u32(0);
  w.u32(0);
  w.u8(type);
  body(w);
  const len = w.length - start - RECORD_HEADER_SIZE;
  w.patchU32(start + 4, len);
  const v = w.view();
  w.patchU32(start, crc32c(v, 0, start + 4, v.length));
}

/** Appends an Entry record (v2 framing unless `framing` says otherwise). */
export function writeEntryRecord(w: ByteWriter, e: Entry, framing: Framing = "v2"): void {
  frame(w, RecordType.Entry, framing, (w) => {
    w.u64(e.index);
    w.u64(e.term);
    w.u8(e.type);
    w.raw(e.data);
  });
}

/** Appends a HardState record. */
export function writeHardStateRecord(w: ByteWriter, hs: HardState, framing: Framing = "v2"): void {
  frame(w, RecordType.HardState, framing, (w) => writeHs(w, hs));
}

/** Appends a Snapshot record. */
export function writeSnapshotRecord(
  w: ByteWriter,
  meta: SnapshotMeta,
  keep: boolean,
  framing: Framing = "v2",
): void {
  frame(w, RecordType.Snapshot, framing, (w) => {
    w.u8(keep ? 1 : 0);
    writeMeta(w, meta);
    writeContexts(w, meta);
  });
}

/** Appends a Header record. */
export function writeHeaderRecord(
  w: ByteWriter,
  meta: SnapshotMeta,
  hs: HardState,
  framing: Framing = "v2",
): void {
  frame(w, RecordType.Header, framing, (w) => {
    writeMeta(w, meta);
    writeHs(w, hs);
    writeContexts(w, meta);
  });
}

/**
 * Reserves the header of a v2 batch at the writer's position; the records of the batch follow,
 * then {@link sealBatch} with the returned position.
 */
export function beginBatch(w: ByteWriter): number {
  const start = w.length;
  w.u32(0);
  w.u32(0);
  w.u32(0);
  return start;
}

/** Completes the batch begun at `start`: fills its header and appends the end marker. */
export function sealBatch(w: ByteWriter, start: number): void {
  const len = w.length - start - BATCH_HEADER_SIZE;
  w.u8(BATCH_END);
  const v = w.view();
  w.patchU32(start + 4, len);
  w.patchU32(start + 8, crc32c(v, 0, start + BATCH_HEADER_SIZE, start + BATCH_HEADER_SIZE + len));
  w.patchU32(start, crc32c(v, 0, start + 4, start + BATCH_HEADER_SIZE));
}

/** A ByteWriter holding one sealed v2 batch of the records `fill` writes. */
export function encodeBatch(fill: (w: ByteWriter) => void, capacity = 256): Uint8Array {
  const w = new ByteWriter(capacity);
  const b = beginBatch(w);
  fill(w);
  sealBatch(w, b);
  return w.finish();
}

/** Decodes a record payload of type `type` in `buf[start, end)`; throws on bad bytes. */
function decodePayload(type: number, buf: Uint8Array, start: number, end: number): LogRecord {
  const r = new ByteReader(buf, "log record", start, end);
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
      const meta = readMeta(r);
      readContexts(r, meta);
      record = { type, keep: keep === 1, meta };
      break;
    }
    case RecordType.Header: {
      const meta = readMeta(r);
      const hs = readHs(r);
      readContexts(r, meta);
      record = { type, meta, hs };
      break;
    }
    default:
      throw new RangeError("record type");
  }
  if (r.remaining !== 0) throw new RangeError("trailing bytes");
  return record;
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
  try {
    return {
      status: "ok",
      record: decodePayload(buf[off + 8], buf, off + RECORD_HEADER_SIZE, end),
      next: end,
    };
  } catch {
    return { status: "bad", reason: "payload", next: end };
  }
}

/** The outcome of reading a whole segment. */
export interface SegmentScan {
  /** The format version of the segment (1: `GKVWAL01`, 2: `GKVWAL02`; 0 when unrecognised). */
  version: 0 | 1 | 2;
  /** The valid records, in order. */
  records: LogRecord[];
  /** The offset just past the last valid record (v1) or batch (v2). */
  validEnd: number;
  /**
   * Why reading stopped before the end of the buffer, if it did. `torn`: the damage has the shape
   * of an interrupted last write (nothing written after it was ever synced), so the last segment
   * may be cut at `validEnd`; otherwise it is corruption of data that may have been acknowledged.
   */
  error?: { offset: number; reason: string; torn: boolean };
}

function hasMagic(buf: Uint8Array, magic: Uint8Array): boolean {
  if (buf.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (buf[i] !== magic[i]) return false;
  return true;
}

/**
 * Reads every record of a segment buffer (magic included), v2 or v1. On the first bad batch (v2)
 * or record (v1) it stops and says whether the damage is a torn tail or corruption.
 */
export function scanSegment(buf: Uint8Array): SegmentScan {
  if (hasMagic(buf, SEGMENT_MAGIC)) return scanV2(buf);
  if (hasMagic(buf, SEGMENT_MAGIC_V1)) return scanV1(buf);
  // Segments are created whole (temporary file + rename): a short or foreign file is damage.
  return {
    version: 0,
    records: [],
    validEnd: 0,
    error: { offset: 0, reason: "magic", torn: false },
  };
}

/**
 * v2: walks the batches. A batch's length is trusted only once its header checksum matched, and
 * nothing inside a batch body (client bytes) is ever taken for a record boundary. The bad batch at
 * `off` is a torn tail when it is what an interrupted last write leaves (see {@link tornBatch});
 * anything else — a complete batch with bytes written after it, a damaged header that is not cut
 * short by zeros — is corruption.
 */
function scanV2(buf: Uint8Array): SegmentScan {
  const records: LogRecord[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = SEGMENT_MAGIC.length;
  for (;;) {
    if (off === buf.length) return { version: 2, records, validEnd: off };
    const bad = (reason: string, torn: boolean): SegmentScan => ({
      version: 2,
      records,
      validEnd: off,
      error: { offset: off, reason, torn },
    });
    if (buf.length - off < BATCH_HEADER_SIZE) return bad("truncated", true);
    const len = dv.getUint32(off + 4, true);
    if (crc32c(buf, 0, off + 4, off + BATCH_HEADER_SIZE) !== dv.getUint32(off, true)) {
      // Torn: zeros reach the end of the file from inside the header, or the header lies in a
      // page that reads as zeros. A bit flip in a written header is neither.
      const torn = zeroTailFrom(buf, off) < off + BATCH_HEADER_SIZE ||
        zeroPage(buf, Math.floor(off / TORN_PAGE) * TORN_PAGE, off + BATCH_HEADER_SIZE);
      return bad("header checksum", torn);
    }
    const bodyStart = off + BATCH_HEADER_SIZE;
    const end = bodyStart + len + 1;
    if (len > MAX_RECORD_PAYLOAD + V2_RECORD_HEADER_SIZE) return bad("length", false);
    if (end > buf.length) return bad("truncated", true);
    if (
      crc32c(buf, 0, bodyStart, bodyStart + len) !== dv.getUint32(off + 8, true) ||
      buf[end - 1] !== BATCH_END
    ) {
      // Bytes after this batch were written after it was synced: it is not the torn last write.
      return bad("checksum", end === buf.length && tornBatch(buf, off));
    }
    const batch: LogRecord[] = [];
    let p = bodyStart;
    try {
      while (p < bodyStart + len) {
        if (bodyStart + len - p < V2_RECORD_HEADER_SIZE) throw new RangeError("record header");
        const rlen = dv.getUint32(p + 1, true);
        const rend = p + V2_RECORD_HEADER_SIZE + rlen;
        if (rend > bodyStart + len) throw new RangeError("record length");
        batch.push(decodePayload(buf[p], buf, p + V2_RECORD_HEADER_SIZE, rend));
        p = rend;
      }
    } catch {
      // The checksum matched: these bytes are what was written. Never a torn write.
      return bad("payload", false);
    }
    for (const r of batch) records.push(r);
    off = end;
  }
}

/** The start of the run of zero bytes that ends the buffer (`buf.length` when the last is not 0). */
function zeroTailFrom(buf: Uint8Array, floor: number): number {
  let z = buf.length;
  while (z > floor && buf[z - 1] === 0) z--;
  return z;
}

/**
 * Whether the complete-looking last batch at `off`, whose checksum failed, is a torn write: its
 * end marker (never 0) or more was lost to zeros (the size reached the disk, the data did not), or
 * a whole {@link TORN_PAGE}-aligned page inside it reads as zeros (pages of one write reach the
 * disk in any order). A batch without either is damage of synced data: corruption.
 */
export function tornBatch(buf: Uint8Array, off: number): boolean {
  if (buf[buf.length - 1] === 0) return true;
  const first = Math.ceil(off / TORN_PAGE) * TORN_PAGE;
  for (let p = first; p + TORN_PAGE <= buf.length; p += TORN_PAGE) {
    if (zeroPage(buf, p, p + TORN_PAGE)) return true;
  }
  return false;
}

/** True when the page at `p` (up to the end of the buffer) is all zeros and reaches `atLeast`. */
function zeroPage(buf: Uint8Array, p: number, atLeast: number): boolean {
  const end = Math.min(p + TORN_PAGE, buf.length);
  if (end < atLeast) return false;
  for (let i = p; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * v1 (read only, kept for logs written before v2): on the first bad record it looks for a valid
 * record at any later byte offset. Entry payloads are client bytes, so a torn tail holding an
 * encoded record reads as corruption here: the reason for v2. The store never appends to a v1
 * segment (it rolls to a v2 one at open).
 */
function scanV1(buf: Uint8Array): SegmentScan {
  const records: LogRecord[] = [];
  let off = SEGMENT_MAGIC_V1.length;
  for (;;) {
    const d = decodeRecordAt(buf, off);
    if (d.status === "eof") return { version: 1, records, validEnd: off };
    if (d.status === "ok") {
      records.push(d.record);
      off = d.next;
      continue;
    }
    return {
      version: 1,
      records,
      validEnd: off,
      error: { offset: off, reason: d.reason, torn: !validRecordAfterV1(buf, off + 1) },
    };
  }
}

/** v1: true when a valid v1 record starts anywhere at or after `from`. */
function validRecordAfterV1(buf: Uint8Array, from: number): boolean {
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
