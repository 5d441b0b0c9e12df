/**
 * The state machine snapshot format, shared by every backend (a snapshot taken on one backend
 * restores on any other): the store's records as laid out by kv_core.ts (user data, sessions and
 * the state machine's clock), in key order.
 *
 * ```
 * "GKVSNAP2"                      8-byte magic
 * u64 appliedIndex
 * records:
 *   u8 1, uvarint keyLen, key, uvarint valueLen, value   (per store key, ascending)
 *   u8 0                                                 (end)
 * u32 crc32c of everything before it
 * ```
 *
 * The earlier "GKVSNAP1" format (a session table of random client ids, then user keys) is still
 * read: its user keys are restored, its sessions are dropped (they are not registered sessions).
 *
 * @module
 */
import { ByteReader, ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import { DecodeError } from "./errors.ts";
import { isSnapshotKey, userKey } from "./kv_core.ts";

const MAGIC = new TextEncoder().encode("GKVSNAP2");
const MAGIC_V1 = new TextEncoder().encode("GKVSNAP1");

/** Builds a snapshot stream: store records in key order, then `finish()`. */
export class SnapshotWriter {
  readonly #w: ByteWriter;

  /** Starts a snapshot at `appliedIndex`. */
  constructor(appliedIndex: number) {
    this.#w = new ByteWriter(4096);
    this.#w.raw(MAGIC);
    this.#w.u64(appliedIndex);
  }

  /** Adds one store record (records that are not snapshot content are skipped). */
  add(key: Uint8Array, value: Uint8Array): void {
    if (!isSnapshotKey(key)) return;
    this.#w.u8(1);
    this.#w.bytes(key);
    this.#w.bytes(value);
  }

  /** Terminates the stream and returns its bytes. */
  finish(): Uint8Array {
    this.#w.u8(0);
    this.#w.u32(crc32c(this.#w.view()));
    return this.#w.finish();
  }
}

/** A decoded snapshot header plus an iterator over its records. */
export interface SnapshotContent {
  /** The applied index recorded by the writer. */
  appliedIndex: number;
  /** The store records in key order. */
  records(): Generator<[Uint8Array, Uint8Array]>;
}

function hasMagic(data: Uint8Array, magic: Uint8Array): boolean {
  for (let i = 0; i < magic.length; i++) if (data[i] !== magic[i]) return false;
  return true;
}

/** Verifies the checksum and decodes the header; throws {@link DecodeError} when invalid. */
export function readSnapshot(data: Uint8Array): SnapshotContent {
  if (data.length < MAGIC.length + 8 + 1 + 4) throw new DecodeError("snapshot", "too short");
  const v1 = hasMagic(data, MAGIC_V1);
  if (!v1 && !hasMagic(data, MAGIC)) throw new DecodeError("snapshot", "bad magic");
  const bodyEnd = data.length - 4;
  const want = new DataView(data.buffer, data.byteOffset + bodyEnd, 4).getUint32(0, true);
  if (crc32c(data, 0, 0, bodyEnd) !== want) throw new DecodeError("snapshot", "checksum mismatch");
  const r = new ByteReader(data, "snapshot", MAGIC.length, bodyEnd);
  const appliedIndex = r.u64();
  if (v1) {
    const n = r.uvarint();
    for (let i = 0; i < n; i++) {
      r.big64();
      r.uvarint();
      r.u8();
    }
  }
  const start = r.pos;
  return {
    appliedIndex,
    *records() {
      const er = new ByteReader(data, "snapshot", start, bodyEnd);
      for (;;) {
        const tag = er.u8();
        if (tag === 0) break;
        if (tag !== 1) throw new DecodeError("snapshot", `unknown record tag ${tag}`);
        const k = er.bytes();
        const v = er.bytes();
        yield [v1 ? userKey(k) : k, v];
      }
      if (er.remaining !== 0) throw new DecodeError("snapshot", "trailing bytes");
    },
  };
}
