/**
 * Record-log writer (WAL and MANIFEST). Records are framed into an in-memory
 * pending buffer; {@linkcode LogWriter.flushSync} hands them to the OS in one
 * write and {@linkcode LogWriter.syncSync}/{@linkcode LogWriter.sync} make them durable.
 * @module
 */
import { ByteWriter, writeU32 } from "./bytes.ts";
import { crc32c, maskCrc } from "./crc32c.ts";
import type { EnvFile } from "./env.ts";
import {
  FRAG_FIRST,
  FRAG_FULL,
  FRAG_LAST,
  FRAG_MIDDLE,
  LOG_BLOCK,
  LOG_HEADER,
  LOG_HEADER_CHECKED,
} from "./log_format.ts";

/** Appends framed records to a log file. */
export class LogWriter {
  /** Offset within the current block. */
  private blockOffset: number;
  private pending = new ByteWriter(64 * 1024);
  /** Bytes handed to the OS so far (file size). */
  written: number;

  constructor(readonly file: EnvFile, readonly path: string, initialSize = 0) {
    this.written = initialSize;
    this.blockOffset = initialSize % LOG_BLOCK;
  }

  /** Frames `data` (a view; it is copied) into the pending buffer. */
  addRecord(data: Uint8Array): void {
    let off = 0;
    let left = data.length;
    let begin = true;
    const p = this.pending;
    p.reserve(data.length + LOG_HEADER * (2 + Math.ceil(data.length / LOG_BLOCK)) + LOG_HEADER);
    do {
      const leftover = LOG_BLOCK - this.blockOffset;
      if (leftover < LOG_HEADER) {
        p.buf.fill(0, p.len, p.len + leftover);
        p.len += leftover;
        this.blockOffset = 0;
      }
      const avail = LOG_BLOCK - this.blockOffset - LOG_HEADER;
      const n = left < avail ? left : avail;
      const end = left === n;
      const type = begin && end ? FRAG_FULL : begin ? FRAG_FIRST : end ? FRAG_LAST : FRAG_MIDDLE;
      const h = p.len;
      const buf = p.buf;
      buf[h + 4] = n >>> 8;
      buf[h + 5] = n & 0xff;
      buf[h + 6] = type;
      buf.set(data.subarray(off, off + n), h + LOG_HEADER);
      const crc = crc32c(buf, h + LOG_HEADER, n, crc32c(buf, h + 6, 1));
      writeU32(buf, h, maskCrc(crc));
      writeU32(buf, h + LOG_HEADER_CHECKED, maskCrc(crc32c(buf, h, LOG_HEADER_CHECKED)));
      p.len += LOG_HEADER + n;
      this.blockOffset += LOG_HEADER + n;
      off += n;
      left -= n;
      begin = false;
    } while (left > 0);
  }

  /** Bytes framed but not yet written to the OS. */
  get pendingBytes(): number {
    return this.pending.len;
  }

  /** Writes all pending bytes to the OS (survives a process crash, not a power cut). */
  flushSync(): void {
    if (this.failed !== undefined) throw this.failed;
    const p = this.pending;
    if (p.len === 0) return;
    let off = 0;
    try {
      while (off < p.len) off += this.file.writeSync(p.buf.subarray(off, p.len));
    } catch (e) {
      // The file now ends in an unknown prefix of the buffer: never write it
      // again (duplicate bytes would read back as corruption).
      this.failed = e;
      this.written += off;
      p.len = 0;
      throw e;
    }
    this.written += p.len;
    p.len = 0;
    if (p.buf.length > 1 << 20) p.buf = new Uint8Array(64 * 1024);
  }

  /** Flushes and fdatasyncs synchronously. */
  syncSync(): void {
    this.flushSync();
    try {
      this.file.syncDataSync();
    } catch (e) {
      this.failed = e; // never retry a failed fdatasync
      throw e;
    }
  }

  /** The first write or sync error of this log; every later write or sync throws it. */
  failed: unknown;

  private syncing = 0;
  private idle: Array<() => void> = [];

  /** Flushes synchronously, then fdatasyncs on a worker thread. */
  async sync(): Promise<void> {
    this.flushSync();
    this.syncing++;
    try {
      if (this.failed !== undefined) throw this.failed;
      await this.file.syncData();
    } catch (e) {
      this.failed ??= e;
      throw e;
    } finally {
      if (--this.syncing === 0) {
        const w = this.idle;
        this.idle = [];
        for (const r of w) r();
      }
    }
  }

  /** Closes the file once no asynchronous sync is running on it. */
  async closeWhenIdle(): Promise<void> {
    while (this.syncing > 0) await new Promise<void>((r) => this.idle.push(r));
    this.close();
  }

  /** Closes the file without writing pending bytes (after a failure). */
  abandon(): void {
    this.pending.len = 0;
    try {
      this.file.close();
    } catch { /* already closed */ }
  }

  /** Closes the file (pending bytes are flushed first). */
  close(): void {
    if (this.failed === undefined) this.flushSync();
    this.file.close();
  }
}
