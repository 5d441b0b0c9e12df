/**
 * Record-log reader. Distinguishes a torn tail (the write in progress at a
 * crash: an incomplete fragment, or a bad checksum in the final fragment or
 * followed only by zeros) from corruption before the tail, which it reports
 * as a {@linkcode CorruptionError} with the file and offset.
 * @module
 */
import { readU32 } from "./bytes.ts";
import { crc32c, unmaskCrc } from "./crc32c.ts";
import { CorruptionError } from "./errors.ts";
import {
  FRAG_FIRST,
  FRAG_FULL,
  FRAG_LAST,
  FRAG_MIDDLE,
  LOG_BLOCK,
  LOG_HEADER,
  LOG_HEADER_CHECKED,
} from "./log_format.ts";

/** Result of reading a log. */
export interface LogReadResult {
  /** Offset just past the last complete record. */
  validEnd: number;
  /** True when bytes after `validEnd` were a torn tail. */
  tornTail: boolean;
  /**
   * True when every byte after `validEnd` is zero (set only with `tornTail`): the log ends
   * there as if the file were that long (a preallocated WAL's unused space; no partial record).
   */
  zeroTail?: boolean;
}

function allZero(data: Uint8Array, from: number): boolean {
  for (let i = from; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/**
 * True when `data` starts with a fragment of the version-1 record log (7-byte
 * header without a header checksum), written by gokv before the format bump.
 */
export function isV1Log(data: Uint8Array): boolean {
  if (data.length < 7) return false;
  const len = (data[4] << 8) | data[5];
  const type = data[6];
  if (type < FRAG_FULL || type > FRAG_LAST || 7 + len > data.length || 7 + len > LOG_BLOCK) {
    return false;
  }
  return unmaskCrc(readU32(data, 0)) === crc32c(data, 7, len, crc32c(data, 6, 1));
}

/**
 * Reads every record of `data` (a whole log file), calling `onRecord` with a
 * view of each payload and its start offset. `path` names the file in errors.
 */
export function readLog(
  data: Uint8Array,
  path: string,
  onRecord: (payload: Uint8Array, offset: number) => void,
): LogReadResult {
  let pos = 0;
  let recStart = -1;
  let parts: Uint8Array[] = [];
  const n = data.length;
  const torn = (): LogReadResult => {
    const validEnd = recStart >= 0 ? recStart : pos;
    return { validEnd, tornTail: true, zeroTail: allZero(data, validEnd) };
  };
  while (pos < n) {
    const inBlock = LOG_BLOCK - (pos % LOG_BLOCK);
    if (inBlock < LOG_HEADER) {
      pos += inBlock;
      continue;
    }
    if (pos + LOG_HEADER > n) return torn();
    const hwant = unmaskCrc(readU32(data, pos + LOG_HEADER_CHECKED));
    if (hwant !== crc32c(data, pos, LOG_HEADER_CHECKED)) {
      // Zero fill, or a header cut by zero fill, is only acceptable as the tail
      // of the file; any other header damage is corruption (its length cannot
      // be trusted, so nothing after it is).
      if (allZero(data, pos + LOG_HEADER)) return torn();
      throw new CorruptionError(path, pos, "log fragment header checksum mismatch");
    }
    const len = (data[pos + 4] << 8) | data[pos + 5];
    const type = data[pos + 6];
    const end = pos + LOG_HEADER + len;
    // The header is intact: a fragment that crosses its block is corruption
    // even near the end of the file; one that runs past the end is a torn tail.
    if (LOG_HEADER + len > inBlock) {
      throw new CorruptionError(path, pos, "fragment crosses block boundary");
    }
    if (end > n) return torn();
    const want = unmaskCrc(readU32(data, pos));
    const got = crc32c(data, pos + LOG_HEADER, len, crc32c(data, pos + 6, 1));
    if (want !== got) {
      if (end === n || allZero(data, end)) return torn();
      throw new CorruptionError(path, pos, "log fragment checksum mismatch");
    }
    const frag = data.subarray(pos + LOG_HEADER, end);
    switch (type) {
      case FRAG_FULL:
        if (recStart >= 0) throw new CorruptionError(path, pos, "full fragment inside a record");
        onRecord(frag, pos);
        break;
      case FRAG_FIRST:
        if (recStart >= 0) throw new CorruptionError(path, pos, "first fragment inside a record");
        recStart = pos;
        parts = [frag];
        break;
      case FRAG_MIDDLE:
        if (recStart < 0) throw new CorruptionError(path, pos, "middle fragment without first");
        parts.push(frag);
        break;
      case FRAG_LAST: {
        if (recStart < 0) throw new CorruptionError(path, pos, "last fragment without first");
        parts.push(frag);
        let total = 0;
        for (const p of parts) total += p.length;
        const rec = new Uint8Array(total);
        let o = 0;
        for (const p of parts) {
          rec.set(p, o);
          o += p.length;
        }
        const start = recStart;
        recStart = -1;
        parts = [];
        onRecord(rec, start);
        break;
      }
      default:
        throw new CorruptionError(path, pos, `unknown fragment type ${type}`);
    }
    pos = end;
  }
  if (recStart >= 0) return torn();
  return { validEnd: pos, tornTail: false };
}
