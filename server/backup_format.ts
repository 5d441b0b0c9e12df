/**
 * The backup file written by `gokv snapshot save` and read by `gokv snapshot restore` and
 * `gokv snapshot status` (the layout is documented in README's "Snapshot file format"):
 *
 * ```
 * "GOKVBAK1"                                   8-byte magic
 * u32 headerLength, header                     JSON (UTF-8): format, index, term, versionstamp,
 *                                              createdAt, nodeId, gokvVersion
 * records, each starting with a tag byte:
 *   0x04 meta     uvarint keyLen, key, uvarint valueLen, value  (the state machine's own records:
 *                 session table, clock — storage/kv_core.ts layout; all come first, ascending)
 *   0x02 key      uvarint keyLen, key, uvarint valueLen, value  (keys strictly ascending)
 *   0x03 key      as 0x02, then the key's 10-byte versionstamp (format 2)
 *   0x05 entry    as 0x03, then u8 encoding (1 V8, 2 LE64, 3 bytes; bit 7: an expiry follows),
 *                 [u64 expireAt ms]  (format 3: what this code writes)
 *   0x00 end      u64 metaCount, u64 keyCount
 *
 * Format 1 files (before registered sessions) carried `0x01 session` records (u64 clientId,
 * uvarint lastSeq, u8 result) instead of meta records, counted in the end record: they are still
 * read, their sessions dropped (random client ids are not registered sessions).
 * 32 bytes: SHA-256 of every byte before them
 * ```
 *
 * Integers are little-endian. Both sides stream: the encoder produces chunks from a
 * {@link StateExport} as the reader pulls them; the decoder reads a file chunk by chunk and
 * checks the checksum, the counts and the key order at the end of the key stream — a consumer
 * (restore) that applies the keys as they come must treat that final check as the commit point.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { ByteReader, ByteWriter, compareBytes } from "../storage/bytes.ts";
import { DecodeError } from "../storage/errors.ts";
import type { StateEntry, StateExport } from "../storage/kv_state_machine.ts";
import { isSessionRecord } from "../storage/kv_core.ts";
import { isValueEncoding, ValueEncoding, VERSIONSTAMP_BYTES } from "../storage/kv_model.ts";

/** The file's first 8 bytes. */
export const BACKUP_MAGIC: Uint8Array = new TextEncoder().encode("GOKVBAK1");
/** The header's `format` value this code writes (it reads 1 too). */
export const BACKUP_FORMAT = 3;
/** Bytes of the trailing SHA-256. */
const HASH_BYTES = 32;
export { VERSIONSTAMP_BYTES } from "../storage/kv_model.ts";
/** Target size of one streamed chunk. */
const CHUNK_BYTES = 64 * 1024;
/** Largest header accepted (a corrupt length must not allocate gigabytes). */
const MAX_HEADER_BYTES = 1 << 20;

const TAG_END = 0x00;
const TAG_SESSION = 0x01;
const TAG_KEY = 0x02;
const TAG_KEY_VS = 0x03;
const TAG_META = 0x04;
const TAG_ENTRY = 0x05;
const EXPIRES = 0x80;

/** The metadata at the start of a backup file. */
export interface BackupHeader {
  /** Always {@link BACKUP_FORMAT}. */
  format: number;
  /** The Raft log index the state reflects (its applied index). */
  index: number;
  /** The term of the entry at `index`. */
  term: number;
  /** The versionstamp through which the state is complete (20 hex digits): (index, 0xffff), above
   * every write it includes and below every later one; null before versionstamps. */
  versionstamp: string | null;
  /** When the snapshot was taken (ISO 8601). */
  createdAt: string;
  /** The node that produced it (the leader then). */
  nodeId: number;
  /** That node's version. */
  gokvVersion: string;
}

/** What a full read of a backup file found. */
export interface BackupSummary {
  /** The header. */
  header: BackupHeader;
  /** Client sessions. */
  sessions: number;
  /** User keys. */
  keys: number;
  /** File size in bytes. */
  bytes: number;
  /** The SHA-256 (hex) the file carries, verified. */
  sha256: string;
}

/** A backup file is corrupt, truncated or of another format. */
export class BackupFormatError extends Error {
  /** Creates the error. */
  constructor(readonly file: string, detail: string) {
    super(`${file}: not a valid gokv snapshot file: ${detail}`);
    this.name = "BackupFormatError";
  }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A reader stopped pulling a backup stream for longer than its idle timeout. */
export class BackupStalledError extends Error {
  /** Creates the error. */
  constructor(readonly idleMs: number) {
    super(`the backup reader pulled nothing for ${idleMs} ms: stream aborted`);
    this.name = "BackupStalledError";
  }
}

/** Default idle timeout of {@link encodeBackup}. */
export const BACKUP_IDLE_TIMEOUT_MS = 60_000;

/**
 * Streams `state` as a backup file. The view is released when the stream ends, fails or is
 * cancelled (a client that disconnects), and when the reader pulls nothing for `idleTimeoutMs`
 * (a stalled client must not hold the state machine's view forever: a Raft snapshot install
 * waits for open views).
 */
export function encodeBackup(
  header: Omit<BackupHeader, "format" | "versionstamp">,
  state: StateExport,
  idleTimeoutMs: number = BACKUP_IDLE_TIMEOUT_MS,
): ReadableStream<Uint8Array> {
  const hash = createHash("sha256");
  const w = new ByteWriter(CHUNK_BYTES + 1024);
  const full: BackupHeader = {
    format: BACKUP_FORMAT,
    ...header,
    versionstamp: state.versionstamp ? hex(state.versionstamp) : null,
  };
  const head = new TextEncoder().encode(JSON.stringify(full));
  w.raw(BACKUP_MAGIC);
  w.u32(head.length);
  w.raw(head);
  const metaIt = state.meta()[Symbol.asyncIterator]();
  let metaDone = false;
  let metaCount = 0;
  const it = state.entries()[Symbol.asyncIterator]();
  let keys = 0;
  let finished = false;
  const take = (): Uint8Array => {
    const out = w.finish();
    w.reset();
    hash.update(out);
    return out;
  };
  let idle: ReturnType<typeof setTimeout> | undefined;
  let stalled = false;
  const stop = () => {
    clearTimeout(idle);
    state.release();
    metaIt.return?.().catch(() => {});
    it.return?.().catch(() => {});
  };
  return new ReadableStream<Uint8Array>({
    start(ctl) {
      idle = setTimeout(() => {
        stalled = true;
        stop();
        ctl.error(new BackupStalledError(idleTimeoutMs));
      }, idleTimeoutMs);
    },
    async pull(ctl) {
      clearTimeout(idle);
      if (stalled) return;
      try {
        while (!metaDone && w.length < CHUNK_BYTES) {
          const m = await metaIt.next();
          if (m.done) {
            metaDone = true;
            break;
          }
          w.u8(TAG_META);
          w.bytes(m.value[0]);
          w.bytes(m.value[1]);
          metaCount++;
        }
        while (metaDone && !finished && w.length < CHUNK_BYTES) {
          const r = await it.next();
          if (r.done) {
            finished = true;
            w.u8(TAG_END);
            w.u64(metaCount);
            w.u64(keys);
            break;
          }
          const e = r.value;
          w.u8(e.versionstamp ? TAG_ENTRY : TAG_KEY);
          w.bytes(e.key);
          w.bytes(e.value);
          if (e.versionstamp) {
            if (e.versionstamp.length !== VERSIONSTAMP_BYTES) {
              throw new RangeError(`a versionstamp has ${VERSIONSTAMP_BYTES} bytes`);
            }
            w.raw(e.versionstamp);
            const exp = e.expireAt !== undefined && e.expireAt > 0;
            w.u8((e.encoding ?? ValueEncoding.BYTES) | (exp ? EXPIRES : 0));
            if (exp) w.u64(e.expireAt!);
          }
          keys++;
        }
        if (w.length > 0) ctl.enqueue(take());
        if (finished) {
          ctl.enqueue(new Uint8Array(hash.digest()));
          stop();
          ctl.close();
          return;
        }
        idle = setTimeout(() => {
          stalled = true;
          stop();
          ctl.error(new BackupStalledError(idleTimeoutMs));
        }, idleTimeoutMs);
      } catch (e) {
        stop();
        ctl.error(e);
      }
    },
    cancel() {
      stop();
    },
  }, { highWaterMark: 1 });
}

/** An opened backup file: the header and sessions are read; the keys stream on demand. */
export interface BackupFile {
  /** The header. */
  header: BackupHeader;
  /** The state machine's own records (session table, clock), to import with the keys. */
  meta: Array<[Uint8Array, Uint8Array]>;
  /** Client sessions the file holds. */
  sessions: number;
  /**
   * The keys in order. The generator throws {@link BackupFormatError} at the first problem —
   * including, after the last key, a count or checksum mismatch — so a consumer must not treat
   * what it has seen as valid before the generator finished.
   */
  entries(): AsyncGenerator<StateEntry>;
  /** The summary, once `entries()` finished without error. */
  summary(): BackupSummary;
  /** Closes the file. Idempotent. */
  close(): void;
}

/** Reads a file in chunks, hashing every byte before the trailing hash. */
class ChunkedFile {
  buf = new Uint8Array(0);
  pos = 0;
  #read = 0;
  readonly hash = createHash("sha256");
  constructor(readonly file: Deno.FsFile, readonly size: number, readonly name: string) {}

  /** Bytes of the body (everything before the hash) not yet buffered. */
  get bodyLeft(): number {
    return this.size - HASH_BYTES - this.#read;
  }

  /** Buffers at least `n` unread body bytes; false when the body ends first. */
  async fill(n: number): Promise<boolean> {
    while (this.buf.length - this.pos < n) {
      if (this.bodyLeft <= 0) return false;
      const want = Math.min(Math.max(CHUNK_BYTES * 4, n), this.bodyLeft);
      const chunk = new Uint8Array(want);
      let got = 0;
      while (got < want) {
        const r = await this.file.read(chunk.subarray(got));
        if (r === null) throw new BackupFormatError(this.name, "the file shrank while reading");
        got += r;
      }
      this.#read += want;
      this.hash.update(chunk);
      const rest = this.buf.subarray(this.pos);
      const next = new Uint8Array(rest.length + want);
      next.set(rest);
      next.set(chunk, rest.length);
      this.buf = next;
      this.pos = 0;
    }
    return true;
  }

  /** Reads the trailing hash. */
  async trailer(): Promise<Uint8Array> {
    const out = new Uint8Array(HASH_BYTES);
    await this.file.seek(this.size - HASH_BYTES, Deno.SeekMode.Start);
    let got = 0;
    while (got < HASH_BYTES) {
      const r = await this.file.read(out.subarray(got));
      if (r === null) throw new BackupFormatError(this.name, "truncated");
      got += r;
    }
    return out;
  }
}

type Rec =
  | { tag: typeof TAG_END; records: number; keys: number }
  | { tag: typeof TAG_SESSION }
  | { tag: typeof TAG_META; key: Uint8Array; value: Uint8Array }
  | { tag: typeof TAG_KEY; entry: StateEntry };

/** Parses one record at `r`'s position; throws DecodeError when the buffer ends inside it. */
function parseRecord(r: ByteReader, name: string): Rec {
  const tag = r.u8();
  switch (tag) {
    case TAG_END:
      return { tag, records: r.u64(), keys: r.u64() };
    case TAG_SESSION:
      r.big64();
      r.uvarint();
      r.u8();
      return { tag };
    case TAG_META:
      return { tag, key: r.bytes(), value: r.bytes() };
    case TAG_KEY:
    case TAG_KEY_VS:
    case TAG_ENTRY: {
      const key = r.bytes();
      const value = r.bytes();
      const entry: StateEntry = { key, value };
      if (tag !== TAG_KEY) entry.versionstamp = r.raw(VERSIONSTAMP_BYTES).slice();
      if (tag === TAG_ENTRY) {
        const flags = r.u8();
        const encoding = flags & ~EXPIRES;
        if (!isValueEncoding(encoding)) {
          throw new BackupFormatError(name, `unknown value encoding ${encoding}`);
        }
        entry.encoding = encoding;
        if (flags & EXPIRES) entry.expireAt = r.u64();
      }
      return { tag: TAG_KEY, entry };
    }
    default:
      throw new BackupFormatError(name, `unknown record tag ${tag}`);
  }
}

/** Opens `path`, checks the magic and reads the header and the sessions. */
export async function openBackup(path: string): Promise<BackupFile> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const src = new ChunkedFile(file, size, path);
    const minimum = BACKUP_MAGIC.length + 4 + 2 + 1 + 16 + HASH_BYTES;
    if (size < minimum) throw new BackupFormatError(path, `truncated (${size} bytes)`);
    await src.fill(BACKUP_MAGIC.length + 4);
    for (let i = 0; i < BACKUP_MAGIC.length; i++) {
      if (src.buf[i] !== BACKUP_MAGIC[i]) throw new BackupFormatError(path, "bad magic");
    }
    const hlen = new DataView(src.buf.buffer).getUint32(BACKUP_MAGIC.length, true);
    if (hlen > MAX_HEADER_BYTES || !(await src.fill(BACKUP_MAGIC.length + 4 + hlen))) {
      throw new BackupFormatError(path, "truncated or corrupt header");
    }
    src.pos = BACKUP_MAGIC.length + 4;
    let header: BackupHeader;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
        src.buf.subarray(src.pos, src.pos + hlen),
      ));
    } catch {
      throw new BackupFormatError(path, "corrupt header");
    }
    src.pos += hlen;
    if (!header || ![1, 2, BACKUP_FORMAT].includes(header.format)) {
      throw new BackupFormatError(path, `unsupported format ${header?.format}`);
    }
    if (!Number.isSafeInteger(header.index) || !Number.isSafeInteger(header.term)) {
      throw new BackupFormatError(path, "corrupt header");
    }

    // Records: sessions first (read now), then keys (streamed by entries()).
    const next = async (): Promise<Rec> => {
      for (;;) {
        const r = new ByteReader(src.buf, "snapshot record", src.pos);
        try {
          const rec = parseRecord(r, path);
          src.pos = r.pos;
          return rec;
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
          // The record continues past the buffer: read more, or the file is truncated.
          // Ask for one more chunk; near the end of the body there may be less than that, and
          // what is there may complete the record.
          const had = src.buf.length - src.pos;
          await src.fill(had + CHUNK_BYTES);
          if (src.buf.length - src.pos === had) {
            throw new BackupFormatError(
              path,
              src.buf.length - src.pos === 0
                ? "truncated: no end record"
                : "truncated or corrupt: a record runs past the end of the file",
            );
          }
        }
      }
    };
    // Format 1: session records (dropped); format 2: meta records.
    const headTag = header.format === 1 ? TAG_SESSION : TAG_META;
    const meta: Array<[Uint8Array, Uint8Array]> = [];
    let headRecords = 0;
    let sessions = 0;
    let pending: Rec;
    for (;;) {
      pending = await next();
      if (pending.tag !== headTag) break;
      headRecords++;
      if (pending.tag === TAG_META) {
        const last = meta.at(-1);
        if (last && compareBytes(last[0], pending.key) >= 0) {
          throw new BackupFormatError(path, "meta records out of order");
        }
        meta.push([pending.key, pending.value]);
        if (isSessionRecord(pending.key)) sessions++;
      }
    }
    let summary: BackupSummary | undefined;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      file.close();
    };
    return {
      header,
      meta,
      sessions,
      async *entries() {
        let keys = 0;
        let last: Uint8Array | undefined;
        let rec: Rec = pending;
        while (rec.tag === TAG_KEY) {
          const e = rec.entry;
          if (last && compareBytes(last, e.key) >= 0) {
            throw new BackupFormatError(path, "keys out of order");
          }
          last = e.key;
          keys++;
          yield e;
          rec = await next();
        }
        if (rec.tag !== TAG_END) {
          throw new BackupFormatError(path, "a session or meta record after the keys");
        }
        if (rec.records !== headRecords || rec.keys !== keys) {
          throw new BackupFormatError(
            path,
            `end record counts ${rec.records} session/meta records and ${rec.keys} keys, the ` +
              `file holds ${headRecords} and ${keys}`,
          );
        }
        if (src.buf.length - src.pos !== 0 || src.bodyLeft !== 0) {
          throw new BackupFormatError(path, "bytes after the end record");
        }
        const want = await src.trailer();
        const got = new Uint8Array(src.hash.digest());
        if (hex(got) !== hex(want)) throw new BackupFormatError(path, "checksum mismatch");
        summary = { header, sessions, keys, bytes: size, sha256: hex(want) };
      },
      summary() {
        if (!summary) throw new Error("summary() before entries() finished");
        return summary;
      },
      close,
    };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Reads and verifies a whole backup file without keeping its keys. */
export async function verifyBackup(path: string): Promise<BackupSummary> {
  const f = await openBackup(path);
  try {
    for await (const _ of f.entries()) { /* counted and hashed by entries() */ }
    return f.summary();
  } finally {
    f.close();
  }
}
