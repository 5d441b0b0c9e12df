/**
 * The state machine snapshot format, shared by every backend (a snapshot taken on one backend
 * restores on any other).
 *
 * ```
 * "GKVSNAP1"                      8-byte magic
 * u64 appliedIndex
 * uvarint sessionCount
 *   u64 clientId, uvarint lastSeq, u8 result       (per session)
 * records:
 *   u8 1, uvarint keyLen, key, uvarint valueLen, value   (per user key, ascending)
 *   u8 0                                                 (end)
 * u32 crc32c of everything before it
 * ```
 *
 * @module
 */
import { ByteReader, ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import { DecodeError } from "./errors.ts";
import { decodeResult, encodeResult, type SessionTable } from "./kv_state_machine.ts";

const MAGIC = new TextEncoder().encode("GKVSNAP1");

/** Builds a snapshot stream: sessions first, then key/values in order, then `finish()`. */
export class SnapshotWriter {
  readonly #w: ByteWriter;

  /** Starts a snapshot at `appliedIndex` with the given session table. */
  constructor(
    appliedIndex: number,
    sessions: ReadonlyMap<bigint, { lastSeq: number; lastResult: { ok: true } }>,
  ) {
    this.#w = new ByteWriter(4096);
    this.#w.raw(MAGIC);
    this.#w.u64(appliedIndex);
    this.#w.uvarint(sessions.size);
    for (const [id, s] of sessions) {
      this.#w.big64(id);
      this.#w.uvarint(s.lastSeq);
      this.#w.u8(encodeResult(s.lastResult));
    }
  }

  /** Adds one user key/value. */
  add(key: Uint8Array, value: Uint8Array): void {
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

/** A decoded snapshot header plus an iterator over its key/values. */
export interface SnapshotContent {
  /** The applied index recorded by the writer. */
  appliedIndex: number;
  /** The session table. */
  sessions: SessionTable;
  /** The user key/values in the order written. */
  entries(): Generator<[Uint8Array, Uint8Array]>;
}

/** Verifies the checksum and decodes the header; throws {@link DecodeError} when invalid. */
export function readSnapshot(data: Uint8Array): SnapshotContent {
  if (data.length < MAGIC.length + 8 + 1 + 1 + 4) throw new DecodeError("snapshot", "too short");
  for (let i = 0; i < MAGIC.length; i++) {
    if (data[i] !== MAGIC[i]) throw new DecodeError("snapshot", "bad magic");
  }
  const bodyEnd = data.length - 4;
  const want = new DataView(data.buffer, data.byteOffset + bodyEnd, 4).getUint32(0, true);
  if (crc32c(data, 0, 0, bodyEnd) !== want) throw new DecodeError("snapshot", "checksum mismatch");
  const r = new ByteReader(data, "snapshot", MAGIC.length, bodyEnd);
  const appliedIndex = r.u64();
  const n = r.uvarint();
  const sessions: SessionTable = new Map();
  for (let i = 0; i < n; i++) {
    const id = r.big64();
    const lastSeq = r.uvarint();
    sessions.set(id, { lastSeq, lastResult: decodeResult(r.u8()) });
  }
  const start = r.pos;
  return {
    appliedIndex,
    sessions,
    *entries() {
      const er = new ByteReader(data, "snapshot", start, bodyEnd);
      for (;;) {
        const tag = er.u8();
        if (tag === 0) break;
        if (tag !== 1) throw new DecodeError("snapshot", `unknown record tag ${tag}`);
        yield [er.bytes(), er.bytes()];
      }
      if (er.remaining !== 0) throw new DecodeError("snapshot", "trailing bytes");
    },
  };
}
