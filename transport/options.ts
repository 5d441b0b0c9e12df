/**
 * Options shared by every transport, their defaults, and the small helpers they share
 * (address parsing, which message kinds may cross the network).
 *
 * @module
 */
import type { Logger } from "../raft/logger.ts";
import { MessageType, type NodeId } from "../raft/types.ts";
import type { Transport } from "../raft/transport.ts";
import { AddressError } from "./errors.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "./frame.ts";
import type { PeerTlsMaterial } from "./peer_conn.ts";

/** How peers prove they are members (see README "Security"); empty means open (loopback). */
export interface PeerSecurity {
  /**
   * The cluster secret: every connection runs a challenge-response on its Hello
   * (transport/peer_auth.ts); a dialer without the secret is refused.
   */
  secret?: Uint8Array;
  /**
   * Mutual TLS (tcp transport): peers must present a certificate signed by `ca` whose common
   * name is `node-<id>` of the id they claim.
   */
  tls?: PeerTlsMaterial;
}

/** The transport implementations. */
export type TransportKind = "tcp" | "grpc" | "memory";

/** Options of {@link createTransport}; only `id`, `listen` and `peers` are required. */
export interface TransportOptions {
  /** This node's id. */
  id: NodeId;
  /** `host:port` to bind (port 0 picks a free port; read {@link PeerTransport.address}). */
  listen: string;
  /** Addresses (`host:port`) to dial, by node id. */
  peers: Map<NodeId, string>;
  /** Where to log; defaults to a logger that discards everything. */
  logger?: Logger;
  /** Largest encoded message accepted or sent, in bytes (default 16 MiB,
   * `MAX_PEER_FRAME_BYTES` in config/limits.ts). */
  maxFrameBytes?: number;
  /** Inbound peer connections accepted at once (default 1024); more are closed at once. */
  maxConnections?: number;
  /** Per-peer send queue bound in messages (default 8192); extra messages are dropped. */
  queueMessages?: number;
  /** Per-peer send queue bound in bytes (default 64 MiB); extra messages are dropped. */
  queueBytes?: number;
  /** First reconnect delay in ms (default 50); doubles per failure, with ±20% jitter. */
  reconnectMinMs?: number;
  /** Longest reconnect delay in ms (default 2000). */
  reconnectMaxMs?: number;
  /** How long a dial may take, in ms (default 3000). */
  dialTimeoutMs?: number;
  /**
   * Deadline for one small call (a gRPC unary batch), in ms (default 5000). Snapshot streams
   * have no overall deadline: they fail only when the connection does.
   */
  callTimeoutMs?: number;
  /** A write, or an inbound frame, that makes no progress for this long (ms) closes the
   * connection (default 30000). */
  stallTimeoutMs?: number;
  /**
   * Deliver a local {@link MessageType.Unreachable} message (`from` = the peer) to the handler
   * when messages to a peer are dropped because it cannot be reached (default true).
   */
  reportUnreachable?: boolean;
  /** Peer authentication (default: none). */
  security?: PeerSecurity;
  /**
   * Accept connections and messages only from current peers (those given in `peers` or added
   * with `addPeer` and not removed since); others are refused and counted. Default false (the
   * node server turns it on).
   */
  membersOnly?: boolean;
}

/** The options with every default filled in. */
export type ResolvedOptions = Required<TransportOptions>;

/** A {@link Transport} that also tells the address it actually bound. */
export interface PeerTransport extends Transport {
  /** Which implementation this is. */
  readonly kind: TransportKind;
  /** The bound `host:port` once {@link Transport.start} resolved (the real port if 0 was asked). */
  readonly address: string;
  /** Why the transport cannot accept peers now (undefined when it can, or not known). */
  readonly problem?: string;
}

/** Fills in defaults. */
export function resolveOptions(o: TransportOptions, logger: Logger): ResolvedOptions {
  return {
    id: o.id,
    listen: o.listen,
    peers: new Map(o.peers),
    logger,
    maxFrameBytes: o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    maxConnections: o.maxConnections ?? 1024,
    queueMessages: o.queueMessages ?? 8192,
    queueBytes: o.queueBytes ?? 64 * 1024 * 1024,
    reconnectMinMs: o.reconnectMinMs ?? 50,
    reconnectMaxMs: o.reconnectMaxMs ?? 2000,
    dialTimeoutMs: o.dialTimeoutMs ?? 3000,
    callTimeoutMs: o.callTimeoutMs ?? 5000,
    stallTimeoutMs: o.stallTimeoutMs ?? 30000,
    reportUnreachable: o.reportUnreachable ?? true,
    security: o.security ?? {},
    membersOnly: o.membersOnly ?? false,
  };
}

/** A parsed `host:port`. */
export interface HostPort {
  /** Host name or IP (IPv6 without brackets). */
  hostname: string;
  /** Port number 0..65535. */
  port: number;
}

/** Parses `host:port` or `[v6]:port`; throws {@link AddressError}. */
export function parseAddress(address: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(address);
  if (m === null) throw new AddressError(address, "want host:port");
  const port = Number(m[3]);
  if (port > 65535) throw new AddressError(address, "port out of range");
  const hostname = m[1] ?? m[2];
  if (hostname === "") throw new AddressError(address, "empty host");
  return { hostname, port };
}

/** Formats a host and port as an address. */
export function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** True for kinds that never leave a node (Hup, Beat, Unreachable, CheckQuorum). */
export function isLocalMessage(type: MessageType): boolean {
  return type === MessageType.Hup || type === MessageType.Beat ||
    type === MessageType.Unreachable || type === MessageType.CheckQuorum;
}

/** Reconnect delay after `failures` consecutive failures, with ±20% jitter. */
export function backoffDelay(o: ResolvedOptions, failures: number): number {
  const base = Math.min(o.reconnectMaxMs, o.reconnectMinMs * 2 ** Math.min(failures, 30));
  return Math.round(base * (0.8 + 0.4 * Math.random()));
}
