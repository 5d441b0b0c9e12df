/**
 * gokv's peer transports. {@link createTransport} builds one of:
 *
 * - `tcp` (default): length-prefixed checksummed binary frames over Deno TCP (transport/tcp.ts);
 * - `grpc`: @grpc/grpc-js with transport/raft.proto (transport/grpc.ts);
 * - `memory`: an in-process hub with fault injection, for tests (transport/memory.ts).
 *
 * All implement {@link Transport} from raft/transport.ts; the wire formats are in FORMAT.md.
 *
 * @module
 */
import { GrpcTransport } from "./grpc.ts";
import { MemoryTransport, type MemoryTransportOptions } from "./memory.ts";
import type { PeerTransport, TransportKind, TransportOptions } from "./options.ts";
import { TcpTransport } from "./tcp.ts";

export type { HostPort, PeerTransport, TransportKind, TransportOptions } from "./options.ts";
export { formatAddress, parseAddress } from "./options.ts";
export { type TcpStats, TcpTransport } from "./tcp.ts";
export type {
  ConfState,
  Entry,
  EntryType,
  MemberContext,
  Message,
  MessageType,
  NodeId,
  SnapshotChunk,
  SnapshotMeta,
} from "../raft/types.ts";
export type { MessageHandler, Transport } from "../raft/transport.ts";
export type { LogFields, Logger } from "../raft/logger.ts";
export { GrpcTransport } from "./grpc.ts";
export {
  defaultMemoryNetwork,
  type FaultOptions,
  MemoryNetwork,
  type MemoryNetworkStats,
  MemoryTransport,
  type MemoryTransportOptions,
} from "./memory.ts";
export * from "./errors.ts";
export { decodeMessage, encodedMessageSize, encodeMessage } from "./message_codec.ts";
export {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  encodeMessageFrame,
  type Frame,
  FrameDecoder,
  FrameType,
} from "./frame.ts";

/** The transport kinds {@link createTransport} accepts. */
export const TRANSPORT_KINDS: readonly TransportKind[] = ["tcp", "grpc", "memory"];

/**
 * Builds a transport of the given kind. Nothing is bound until `start`. For `memory`, pass
 * `network` (a {@link MemoryNetwork}) to use a private hub instead of the default one.
 */
export function createTransport(
  kind: TransportKind,
  opts: TransportOptions | MemoryTransportOptions,
): PeerTransport {
  switch (kind) {
    case "tcp":
      return new TcpTransport(opts);
    case "grpc":
      return new GrpcTransport(opts);
    case "memory":
      return new MemoryTransport(opts);
    default:
      throw new TypeError(`unknown transport kind: ${String(kind)}`);
  }
}
