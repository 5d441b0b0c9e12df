/**
 * Binary encoding of {@link ConfChange} for {@link EntryType.ConfChange} entries.
 *
 * Layout (big endian): `u8 version(=1) | u32 count | count × (u8 type | f64 nodeId) |
 * u32 contextLength | context`.
 *
 * @module
 */
import { type ConfChange, type ConfChangeSingle, ConfChangeType } from "./types.ts";

const VERSION = 1;

/** Encodes a membership change. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const size = 1 + 4 + cc.changes.length * 9 + 4 + cc.context.length;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let o = 0;
  dv.setUint8(o, VERSION);
  o += 1;
  dv.setUint32(o, cc.changes.length);
  o += 4;
  for (const c of cc.changes) {
    dv.setUint8(o, c.type);
    dv.setFloat64(o + 1, c.nodeId);
    o += 9;
  }
  dv.setUint32(o, cc.context.length);
  o += 4;
  out.set(cc.context, o);
  return out;
}

/** A buffer that is not a valid encoded {@link ConfChange}. */
export class ConfChangeDecodeError extends Error {
  /** Creates the error. */
  constructor(reason: string) {
    super(`invalid ConfChange encoding: ${reason}`);
    this.name = "ConfChangeDecodeError";
  }
}

/** Decodes a membership change; throws {@link ConfChangeDecodeError} on malformed input. */
export function decodeConfChange(buf: Uint8Array): ConfChange {
  if (buf.length < 9) throw new ConfChangeDecodeError("too short");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint8(0) !== VERSION) throw new ConfChangeDecodeError("unknown version");
  const n = dv.getUint32(1);
  let o = 5;
  if (buf.length < o + n * 9 + 4) throw new ConfChangeDecodeError("truncated changes");
  const changes: ConfChangeSingle[] = [];
  for (let i = 0; i < n; i++) {
    const type = dv.getUint8(o) as ConfChangeType;
    if (type > ConfChangeType.AddLearner) throw new ConfChangeDecodeError("unknown change type");
    const nodeId = dv.getFloat64(o + 1);
    if (!Number.isSafeInteger(nodeId) || nodeId <= 0) {
      throw new ConfChangeDecodeError("bad node id");
    }
    changes.push({ type, nodeId });
    o += 9;
  }
  const clen = dv.getUint32(o);
  o += 4;
  if (buf.length !== o + clen) throw new ConfChangeDecodeError("bad context length");
  return { changes, context: buf.slice(o, o + clen) };
}
