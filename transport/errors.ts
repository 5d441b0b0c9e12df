/**
 * Typed errors of the transport layer. Callers test them with `instanceof` and read the
 * structured `reason` field rather than parsing messages.
 *
 * @module
 */

/** Why a frame was refused. */
export type FrameErrorReason =
  | "bad-magic"
  | "bad-version"
  | "bad-type"
  | "too-large"
  | "bad-checksum"
  | "truncated";

/** A frame on the wire is malformed. The connection that carried it must be closed. */
export class FrameError extends Error {
  /** Always "FrameError". */
  override name = "FrameError";
  /** The machine-readable cause. */
  readonly reason: FrameErrorReason;
  /** Byte offset within the frame where the problem was found. */
  readonly offset: number;

  /** Creates a frame error. */
  constructor(reason: FrameErrorReason, detail: string, offset = 0) {
    super(`frame: ${reason}: ${detail}`);
    this.reason = reason;
    this.offset = offset;
  }
}

/** Why an encoded message (or handshake) was refused. */
export type DecodeErrorReason =
  | "truncated"
  | "trailing-bytes"
  | "bad-enum"
  | "bad-flags"
  | "bad-integer"
  | "bad-length"
  | "bad-count"
  | "bad-snapshot";

/** An encoded message is malformed: bad enum, length, count or integer. */
export class DecodeError extends Error {
  /** Always "DecodeError". */
  override name = "DecodeError";
  /** The machine-readable cause. */
  readonly reason: DecodeErrorReason;
  /** Byte offset within the payload where the problem was found. */
  readonly offset: number;

  /** Creates a decode error. */
  constructor(reason: DecodeErrorReason, detail: string, offset: number) {
    super(`decode: ${reason} at ${offset}: ${detail}`);
    this.reason = reason;
    this.offset = offset;
  }
}

/** A message cannot be encoded (a field is not a safe non-negative integer, or too large). */
export class EncodeError extends Error {
  /** Always "EncodeError". */
  override name = "EncodeError";
  /** The offending field. */
  readonly field: string;

  /** Creates an encode error. */
  constructor(field: string, detail: string) {
    super(`encode: ${field}: ${detail}`);
    this.field = field;
  }
}

/** An address string is not `host:port`. */
export class AddressError extends Error {
  /** Always "AddressError". */
  override name = "AddressError";
  /** The address that was refused. */
  readonly address: string;

  /** Creates an address error. */
  constructor(address: string, detail: string) {
    super(`address ${JSON.stringify(address)}: ${detail}`);
    this.address = address;
  }
}

/** Why a peer broke the connection protocol (a valid frame or message in the wrong place). */
export type ProtocolErrorReason =
  | "expected-hello"
  | "duplicate-hello"
  | "wrong-node"
  | "wrong-sender"
  | "local-message"
  /** The Hello's sender is not (or no longer) a member. */
  | "unknown-peer"
  /** A cluster secret is configured and the dialer did not run the challenge-response. */
  | "unauthenticated"
  /** The challenge-response proof is wrong (no or another cluster secret, or a replay). */
  | "bad-proof"
  /** The TLS certificate's common name is not `node-<id>` of the claimed sender. */
  | "wrong-identity";

/** A peer sent something well-formed that the protocol does not allow. */
export class ProtocolError extends Error {
  /** Always "ProtocolError". */
  override name = "ProtocolError";
  /** The machine-readable cause. */
  readonly reason: ProtocolErrorReason;

  /** Creates a protocol error. */
  constructor(reason: ProtocolErrorReason, detail: string) {
    super(`protocol: ${reason}: ${detail}`);
    this.reason = reason;
  }
}

/** An address is already served by another memory transport. */
export class AddressInUseError extends Error {
  /** Always "AddressInUseError". */
  override name = "AddressInUseError";
  /** The address. */
  readonly address: string;

  /** Creates the error. */
  constructor(address: string) {
    super(`address in use: ${address}`);
    this.address = address;
  }
}
