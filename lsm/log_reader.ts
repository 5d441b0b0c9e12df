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
} from "./log_format.ts";

/** Result of reading a log. */
export interface LogReadResult {
  /** Offset just past the last complete record. */
  validEnd: number;
  /** True when bytes after `validEnd` were a torn tail. */
  tornTail: boolean;
}

function allZero(data: Uint8Array, from: number): boolean {
  for (let i = from; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
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
  const torn = (): LogReadResult => ({ validEnd: recStart >= 0 ? recStart : pos, tornTail: true });
  while (pos < n) {
    const inBlock = LOG_BLOCK - (pos % LOG_BLOCK);
    if (inBlock < LOG_HEADER) {
      pos += inBlock;
      continue;
    }
    if (pos + LOG_HEADER > n) return torn();
    const len = (data[pos + 4] << 8) | data[pos + 5];
    const type = data[pos + 6];
    const end = pos + LOG_HEADER + len;
    if (type === 0 && len === 0 && readU32(data, pos) === 0) {
      // Zero fill: only acceptable as the tail of the file.
      if (allZero(data, pos)) return torn();
      throw new CorruptionError(path, pos, "zeroed fragment before end of log");
    }
    if (end > n) return torn();
    if (LOG_HEADER + len > inBlock) {
      throw new CorruptionError(path, pos, "fragment crosses block boundary");
    }
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
