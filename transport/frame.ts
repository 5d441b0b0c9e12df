/**
 * Length-prefixed, checksummed frames for the TCP transport. The layout is described in
 * transport/FORMAT.md ("Frame"):
 *
 * ```text
 * u16 magic 0x474B ("GK") | u8 version (1) | u8 type | u32 payload length | payload | u32 crc32c
 * ```
 *
 * The checksum covers the 8 header bytes and the payload. {@link FrameDecoder} is the streaming
 * reader: it refuses a bad header (magic, version, type, length above the maximum) as soon as
 * the 8 header bytes are in, so a huge length never makes it wait or allocate.
 *
 * @module
 */
import { MAX_PEER_FRAME_BYTES } from "../config/limits.ts";
import type { Message, NodeId } from "../raft/types.ts";
import { crc32cUpdate } from "./crc32c.ts";
import { DecodeError, EncodeError, FrameError } from "./errors.ts";
import { encodedMessageSize, encodeMessageInto } from "./message_codec.ts";

/** "GK". */
export const FRAME_MAGIC = 0x474b;
/** The only frame version this code speaks. */
export const FRAME_VERSION = 1;
/** Header bytes: magic, version, type, length. */
export const FRAME_HEADER_BYTES = 8;
/** Trailer bytes: the checksum. */
export const FRAME_TRAILER_BYTES = 4;
/** The default maximum payload size: 16 MiB (config/limits.ts). */
export const DEFAULT_MAX_FRAME_BYTES: number = MAX_PEER_FRAME_BYTES;

/** The kinds of frames. */
export enum FrameType {
  /** First frame on a connection: who is sending and to whom (see {@link encodeHello}). */
  Hello = 1,
  /** One encoded Raft message (transport/message_codec.ts). */
  Message = 2,
  /** Receiver to dialer, when a cluster secret is configured: `nonceB | proofB` (64 bytes). */
  Challenge = 3,
  /** Dialer to receiver, answering a Challenge: `proofA` (32 bytes). */
  Auth = 4,
}

/** A decoded frame. `payload` may be a view into the decoder's buffer: use it before `push`. */
export interface Frame {
  /** The kind. */
  type: FrameType;
  /** The payload bytes. */
  payload: Uint8Array;
}

/** The handshake: sender and intended receiver. */
export interface Hello {
  /** The dialing node. */
  from: NodeId;
  /** The node the dialer believes it reached. */
  to: NodeId;
  /** The dialer's nonce (32 bytes) when it authenticates with a cluster secret. */
  nonce?: Uint8Array;
}

/** Payload size of a Hello frame without a nonce. */
export const HELLO_BYTES = 16;
/** Payload size of a Hello frame with a nonce. */
export const HELLO_AUTH_BYTES = 48;
const TWO_32 = 0x1_0000_0000;
const INITIAL_CAPACITY = 64 * 1024;
const SHRINK_ABOVE = 1024 * 1024;

function writeHeader(buf: Uint8Array, type: FrameType, length: number): DataView {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  dv.setUint16(0, FRAME_MAGIC);
  dv.setUint8(2, FRAME_VERSION);
  dv.setUint8(3, type);
  dv.setUint32(4, length);
  return dv;
}

function seal(buf: Uint8Array, dv: DataView, payloadEnd: number): Uint8Array {
  dv.setUint32(payloadEnd, crc32cUpdate(0, buf, 0, payloadEnd));
  return buf;
}

/** Wraps an arbitrary payload in a frame. */
export function encodeFrame(type: FrameType, payload: Uint8Array): Uint8Array {
  const end = FRAME_HEADER_BYTES + payload.length;
  const buf = new Uint8Array(end + FRAME_TRAILER_BYTES);
  const dv = writeHeader(buf, type, payload.length);
  buf.set(payload, FRAME_HEADER_BYTES);
  return seal(buf, dv, end);
}

/**
 * Encodes `m` straight into a Message frame (one allocation). Throws {@link EncodeError} if a
 * field cannot be encoded or the payload exceeds `maxFrameBytes`.
 */
export function encodeMessageFrame(
  m: Message,
  maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
): Uint8Array {
  const size = encodedMessageSize(m);
  if (size > maxFrameBytes) {
    throw new EncodeError("message", `encoded size ${size} exceeds max frame ${maxFrameBytes}`);
  }
  const end = FRAME_HEADER_BYTES + size;
  const buf = new Uint8Array(end + FRAME_TRAILER_BYTES);
  const dv = writeHeader(buf, FrameType.Message, size);
  encodeMessageInto(m, buf, FRAME_HEADER_BYTES);
  return seal(buf, dv, end);
}

/**
 * Appends the Message frame of `m` to `buf` at `offset` and returns the offset after it. `buf`
 * must have `FRAME_HEADER_BYTES + size + FRAME_TRAILER_BYTES` bytes free, where `size` is
 * {@link encodedMessageSize}(m); `dv` spans exactly `buf`. Throws {@link EncodeError}; on a
 * throw, bytes from `offset` on are garbage but nothing before it is touched.
 */
export function writeMessageFrame(
  m: Message,
  size: number,
  buf: Uint8Array,
  dv: DataView,
  offset: number,
): number {
  dv.setUint16(offset, FRAME_MAGIC);
  dv.setUint8(offset + 2, FRAME_VERSION);
  dv.setUint8(offset + 3, FrameType.Message);
  dv.setUint32(offset + 4, size);
  const end = encodeMessageInto(m, buf, offset + FRAME_HEADER_BYTES, dv);
  dv.setUint32(end, crc32cUpdate(0, buf, offset, end));
  return end + FRAME_TRAILER_BYTES;
}

/** Encodes a Hello frame. */
export function encodeHello(h: Hello): Uint8Array {
  for (const [k, v] of [["from", h.from], ["to", h.to]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new EncodeError(k, `bad node id ${v}`);
  }
  if (h.nonce !== undefined && h.nonce.length !== HELLO_AUTH_BYTES - HELLO_BYTES) {
    throw new EncodeError("nonce", `nonce is ${h.nonce.length} bytes`);
  }
  const p = new Uint8Array(h.nonce === undefined ? HELLO_BYTES : HELLO_AUTH_BYTES);
  if (h.nonce !== undefined) p.set(h.nonce, HELLO_BYTES);
  const dv = new DataView(p.buffer);
  dv.setUint32(0, Math.floor(h.from / TWO_32));
  dv.setUint32(4, h.from >>> 0);
  dv.setUint32(8, Math.floor(h.to / TWO_32));
  dv.setUint32(12, h.to >>> 0);
  return encodeFrame(FrameType.Hello, p);
}

/** Decodes a Hello payload; throws {@link DecodeError} if malformed. */
export function decodeHello(p: Uint8Array): Hello {
  if (p.length !== HELLO_BYTES && p.length !== HELLO_AUTH_BYTES) {
    throw new DecodeError(
      "bad-length",
      `hello is ${p.length} bytes, want ${HELLO_BYTES} or ${HELLO_AUTH_BYTES}`,
      0,
    );
  }
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const fromHi = dv.getUint32(0);
  const toHi = dv.getUint32(8);
  if (fromHi > 0x1f_ffff) throw new DecodeError("bad-integer", "hello from exceeds 2^53-1", 0);
  if (toHi > 0x1f_ffff) throw new DecodeError("bad-integer", "hello to exceeds 2^53-1", 8);
  const h: Hello = {
    from: fromHi * TWO_32 + dv.getUint32(4),
    to: toHi * TWO_32 + dv.getUint32(12),
  };
  if (p.length === HELLO_AUTH_BYTES) h.nonce = p.slice(HELLO_BYTES);
  return h;
}

/**
 * A streaming frame reader. `push` bytes as they arrive, then call `next` until it returns null.
 * Any malformed input throws {@link FrameError}; after that the decoder (and the connection)
 * must be discarded.
 */
export class FrameDecoder {
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  readonly #max: number;

  /** Creates a decoder that refuses payloads above `maxFrameBytes`. */
  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.#max = maxFrameBytes;
    this.#buf = new Uint8Array(INITIAL_CAPACITY);
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Appends received bytes. Frames returned earlier by {@link next} become invalid. */
  push(chunk: Uint8Array): void {
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      // Give back the memory of a large frame once it has been consumed.
      if (this.#buf.length > SHRINK_ABOVE && chunk.length <= INITIAL_CAPACITY) {
        this.#buf = new Uint8Array(INITIAL_CAPACITY);
      }
    }
    const have = this.#end - this.#start;
    if (this.#end + chunk.length > this.#buf.length) {
      if (have + chunk.length <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        let cap = this.#buf.length * 2;
        while (cap < have + chunk.length) cap *= 2;
        const nb = new Uint8Array(cap);
        nb.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = nb;
      }
      this.#start = 0;
      this.#end = have;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  /**
   * Returns the next complete frame, or null when more bytes are needed. Throws
   * {@link FrameError} as soon as the buffered bytes cannot start a valid frame.
   */
  next(): Frame | null {
    const have = this.#end - this.#start;
    if (have < FRAME_HEADER_BYTES) {
      // Refuse a bad magic/version early, even before the whole header is in.
      if (have >= 1 && this.#buf[this.#start] !== FRAME_MAGIC >> 8) this.#badMagic();
      if (have >= 2 && this.#buf[this.#start + 1] !== (FRAME_MAGIC & 0xff)) this.#badMagic();
      if (have >= 3 && this.#buf[this.#start + 2] !== FRAME_VERSION) this.#badVersion();
      return null;
    }
    const s = this.#start;
    const b = this.#buf;
    if (((b[s] << 8) | b[s + 1]) !== FRAME_MAGIC) this.#badMagic();
    if (b[s + 2] !== FRAME_VERSION) this.#badVersion();
    const type = b[s + 3];
    if (type < FrameType.Hello || type > FrameType.Auth) {
      throw new FrameError("bad-type", `unknown frame type ${type}`, 3);
    }
    const len = ((b[s + 4] << 24) | (b[s + 5] << 16) | (b[s + 6] << 8) | b[s + 7]) >>> 0;
    if (len > this.#max) {
      throw new FrameError("too-large", `payload length ${len} exceeds maximum ${this.#max}`, 4);
    }
    const total = FRAME_HEADER_BYTES + len + FRAME_TRAILER_BYTES;
    if (have < total) return null;
    const crcAt = s + FRAME_HEADER_BYTES + len;
    const want = ((b[crcAt] << 24) | (b[crcAt + 1] << 16) | (b[crcAt + 2] << 8) | b[crcAt + 3]) >>>
      0;
    const got = crc32cUpdate(0, b, s, crcAt);
    if (got !== want) {
      throw new FrameError("bad-checksum", `crc32c ${got} != ${want}`, FRAME_HEADER_BYTES + len);
    }
    this.#start += total;
    return { type: type as FrameType, payload: b.subarray(s + FRAME_HEADER_BYTES, crcAt) };
  }

  /** Throws if a partial frame is buffered: call at end of stream. */
  finish(): void {
    const have = this.#end - this.#start;
    if (have > 0) {
      throw new FrameError("truncated", `stream ended inside a frame (${have} bytes)`, 0);
    }
  }

  #badMagic(): never {
    throw new FrameError("bad-magic", "not a gokv frame", 0);
  }

  #badVersion(): never {
    throw new FrameError("bad-version", `unsupported version ${this.#buf[this.#start + 2]}`, 2);
  }
}
