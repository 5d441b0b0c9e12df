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
import { crc32c, crc32cPaced } from "./crc32c.ts";
import type { Pacer } from "./settle.ts";
import { DecodeError } from "./errors.ts";
import { isSnapshotKey, userKey } from "./kv_core.ts";

const MAGIC = new TextEncoder().encode("GKVSNAP2");
const MAGIC_V1 = new TextEncoder().encode("GKVSNAP1");

/** Records are packed into chunks of this size; a larger record gets a chunk of its own. */
const CHUNK = 1 << 20;

/**
 * Builds a snapshot stream: store records in key order, then `finish()` (or
 * {@link SnapshotWriter.finishPaced} for a large state). The records are packed into chunks of
 * about 1 MiB whose checksum is extended as each fills, so a state of any size is copied once
 * into its chunks and once into the result, never regrown by doubling, and the checksum is spread
 * over the scan.
 */
export class SnapshotWriter {
  readonly #chunks: Uint8Array[] = [];
  #w = new ByteWriter(CHUNK);
  #crc = 0;
  #size = 0;

  /** Starts a snapshot at `appliedIndex`. */
  constructor(appliedIndex: number) {
    this.#w.raw(MAGIC);
    this.#w.u64(appliedIndex);
  }

  /** Bytes written so far. */
  get size(): number {
    return this.#size + this.#w.length;
  }

  /** Adds one store record (records that are not snapshot content are skipped). */
  add(key: Uint8Array, value: Uint8Array): void {
    if (!isSnapshotKey(key)) return;
    const n = 21 + key.length + value.length; // tag, two varint lengths, key, value
    if (this.#w.length + n > CHUNK) this.#seal(n > CHUNK ? n : CHUNK);
    this.#w.u8(1);
    this.#w.bytes(key);
    this.#w.bytes(value);
  }

  /** Closes the current chunk (extending the checksum over it) and starts one of `capacity`. */
  #seal(capacity: number): void {
    const b = this.#w.view();
    if (b.length > 0) {
      this.#crc = crc32c(b, this.#crc);
      this.#chunks.push(b);
      this.#size += b.length;
    }
    this.#w = new ByteWriter(capacity);
  }

  /** Terminates the stream: the end tag and the checksum trailer, in the last chunk. */
  #end(): number {
    this.#w.u8(0);
    this.#seal(16);
    this.#w.u32(this.#crc);
    this.#seal(16);
    return this.#size;
  }

  /** Terminates the stream and returns its bytes. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.#end());
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.#chunks.length = 0;
    return out;
  }

  /** {@link SnapshotWriter.finish}, copying the chunks with `pacer` between them. */
  async finishPaced(pacer: Pacer): Promise<Uint8Array> {
    const out = new Uint8Array(this.#end());
    let at = 0;
    for (let i = 0; i < this.#chunks.length; i++) {
      const c = this.#chunks[i];
      out.set(c, at);
      at += c.length;
      this.#chunks[i] = EMPTY; // what is copied can be collected
      await pacer.pace();
    }
    this.#chunks.length = 0;
    return out;
  }
}

const EMPTY = new Uint8Array(0);

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
  checkHeader(data);
  const bodyEnd = data.length - 4;
  if (crc32c(data, 0, 0, bodyEnd) !== trailer(data)) {
    throw new DecodeError("snapshot", "checksum mismatch");
  }
  return decodeChecked(data);
}

/** {@link readSnapshot} with the checksum computed in slices, `pacer` between them. */
export async function readSnapshotPaced(data: Uint8Array, pacer: Pacer): Promise<SnapshotContent> {
  checkHeader(data);
  if (await crc32cPaced(data, pacer, 0, 0, data.length - 4) !== trailer(data)) {
    throw new DecodeError("snapshot", "checksum mismatch");
  }
  return decodeChecked(data);
}

function checkHeader(data: Uint8Array): void {
  if (data.length < MAGIC.length + 8 + 1 + 4) throw new DecodeError("snapshot", "too short");
  if (!hasMagic(data, MAGIC_V1) && !hasMagic(data, MAGIC)) {
    throw new DecodeError("snapshot", "bad magic");
  }
}

function trailer(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset + data.length - 4, 4).getUint32(0, true);
}

/** Decodes a snapshot whose header and checksum were checked. */
function decodeChecked(data: Uint8Array): SnapshotContent {
  const v1 = hasMagic(data, MAGIC_V1);
  const bodyEnd = data.length - 4;
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
