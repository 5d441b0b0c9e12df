/**
 * Every size, count and time limit of gokv, in one place. Every layer takes its limits from here
 * (this module imports nothing, so storage/ and transport/ may use it too); README's
 * configuration table documents the configurable ones (the `limits:` section of the config).
 *
 * Two kinds:
 *
 * - **Hard limits** (constants): they decide what a command in the Raft log may hold, so every
 *   node must agree on them and they are not configurable. The service refuses a request over
 *   one before it is proposed ({@link LimitError}); the state machine refuses a command over one
 *   the same way on every node (a log written by an older version).
 * - **Node limits** ({@link NodeLimits}): what one node accepts from its clients and peers
 *   (connections, timeouts, page sizes, buffered bytes). They only protect that node, so they may
 *   differ between nodes.
 *
 * How the hard limits fit together: a key of {@link MAX_KEY_BYTES} plus a value of
 * {@link MAX_VALUE_BYTES} plus a session fits in one client request frame
 * ({@link MAX_CLIENT_FRAME_BYTES}) and in one peer frame ({@link MAX_PEER_FRAME_BYTES}, so an
 * entry always crosses the network alone); the LSM engine (lsm/db.ts) allows keys of 64 KiB,
 * which is a user key of 65,535 bytes plus the state machine's one-byte key prefix.
 *
 * @module
 */

const KIB = 1024;
const MIB = 1024 * 1024;

/** Longest key (bytes). Keys are 1 to 65,535 bytes. */
export const MAX_KEY_BYTES = 64 * KIB - 1;
/** Longest value (bytes): 8 MiB. */
export const MAX_VALUE_BYTES = 8 * MIB;
/** Room for everything in a request or response frame but the key and the value. */
const FRAME_OVERHEAD_BYTES = 64 * KIB;
/** Largest client protocol frame body, in either direction: 8 MiB + 128 KiB. A response page
 * always fits (the page byte budget is at most {@link MAX_SCAN_PAGE_BYTES}, and a page whose
 * first pair alone exceeds the budget holds only that pair). */
export const MAX_CLIENT_FRAME_BYTES: number = MAX_KEY_BYTES + MAX_VALUE_BYTES +
  FRAME_OVERHEAD_BYTES;
/** Most bytes of commands the leader puts in one batch entry (many client commands per Raft
 * entry, raft/node.ts ProposalBatcher); a larger command gets an entry of its own. */
export const MAX_BATCH_ENTRY_BYTES = 1 * MIB;
/** Most commands in one batch entry (each gets its own versionstamp position, a u16). */
export const MAX_BATCH_COMMANDS = 4096;
/** Largest peer transport frame payload: 16 MiB (one entry of the largest size fits). */
export const MAX_PEER_FRAME_BYTES = 16 * MIB;
/** Largest payload a peer may send before its Hello (the Hello itself is a few bytes). */
export const MAX_PEER_HELLO_BYTES = 4 * KIB;
/** Largest scan page, in pairs (a request asking for more gets this many). */
export const MAX_SCAN_PAGE_PAIRS = 100_000;
/** Largest scan page byte budget. */
export const MAX_SCAN_PAGE_BYTES = 8 * MIB;
/** Longest member address string (host:port). */
export const MAX_ADDRESS_BYTES = 1024;

/** The limits one node enforces on what reaches it (the `limits:` config section). */
export interface NodeLimits {
  /** Largest HTTP request body (bytes); checked while the body streams in. */
  httpBodyBytes: number;
  /** Pairs in a scan page when the request names no limit. */
  scanPagePairs: number;
  /** Bytes of keys and values in one scan page (a page holds at least one pair). */
  scanPageBytes: number;
  /** Open connections per listener (client port, HTTP, peer port); more are closed at once. */
  maxConnections: number;
  /** A connection with nothing in flight that sends nothing for this long is closed (ms). */
  idleTimeoutMs: number;
  /** A request (frame, HTTP headers or body) that makes no progress for this long is dropped
   * (ms); also the time a new connection has to send its first byte. */
  requestTimeoutMs: number;
  /** Bytes of partially received requests one listener holds for all its connections; a
   * connection that needs more waits (and is dropped at the request timeout). */
  bufferedBytes: number;
  /** Commits of user-key changes a node keeps for watches to resume from. */
  watchHistoryEvents: number;
  /** Bytes (keys and values) of the change history a node keeps for watches. */
  watchHistoryBytes: number;
  /** Bytes a node holds unsent for one reader that does not keep up: an HTTP (Server-Sent
   * Events) or KV Connect watch stream's queue, a client connection's unwritten responses. A
   * stream at the bound stops producing (a connection stops reading requests); one whose reader
   * takes nothing for `requestTimeoutMs` meanwhile is ended (server/watch_stream.ts). */
  sendBufferBytes: number;
  /** Atomic operations, every front end (Deno's defaults): checks in one operation. */
  atomicChecks: number;
  /** Atomic operations: mutations in one operation. */
  atomicMutations: number;
  /** Atomic operations: longest key of a mutation (a versionstamped key with its 10-byte
   * suffix); a check's key may have one byte more (as a read's, like Deno KV). */
  atomicKeyBytes: number;
  /** Atomic operations: largest value of a mutation (bytes). */
  atomicValueBytes: number;
  /** Atomic operations: bytes of the keys and values of one operation, checks included. */
  atomicTotalBytes: number;
  /** KV Connect: longest key of a read (bytes; one more than a write's, for range ends). */
  kvConnectReadKeyBytes: number;
  /** KV Connect: ranges in one snapshot read. */
  kvConnectReadRanges: number;
  /** KV Connect: entries one snapshot read may ask for, over all its ranges. */
  kvConnectReadEntries: number;
  /** KV Connect: keys in one watch. */
  kvConnectWatchedKeys: number;
}

/** One configurable node limit: its YAML key, default, bounds and meaning. */
export interface NodeLimitSpec {
  /** The key under `limits:`. */
  key: string;
  /** The {@link NodeLimits} field. */
  field: keyof NodeLimits;
  /** The default. */
  default: number;
  /** Smallest value accepted. */
  min: number;
  /** Largest value accepted. */
  max: number;
  /** What it limits. */
  doc: string;
}

/** The configurable node limits (config/config.ts reads them, README documents them). */
export const NODE_LIMIT_SPECS: readonly NodeLimitSpec[] = [
  {
    key: "http_body_bytes",
    field: "httpBodyBytes",
    default: MAX_VALUE_BYTES + FRAME_OVERHEAD_BYTES,
    min: 1 * KIB,
    max: 64 * MIB,
    doc: "largest HTTP request body, checked while it streams (413 above)",
  },
  {
    key: "scan_page_pairs",
    field: "scanPagePairs",
    default: 1000,
    min: 1,
    max: MAX_SCAN_PAGE_PAIRS,
    doc: "pairs per scan page when the request names no limit",
  },
  {
    key: "scan_page_bytes",
    field: "scanPageBytes",
    default: 4 * MIB,
    min: 1 * KIB,
    max: MAX_SCAN_PAGE_BYTES,
    doc: "bytes of keys and values per scan page (at least one pair)",
  },
  {
    key: "max_connections",
    field: "maxConnections",
    default: 1024,
    min: 1,
    max: 1_000_000,
    doc: "open connections per listener (client, HTTP, peer)",
  },
  {
    key: "idle_timeout_ms",
    field: "idleTimeoutMs",
    default: 300_000,
    min: 10,
    max: 86_400_000,
    doc: "a connection idle this long is closed",
  },
  {
    key: "request_timeout_ms",
    field: "requestTimeoutMs",
    default: 10_000,
    min: 10,
    max: 3_600_000,
    doc: "a request (first byte, frame, headers, body) stalled this long is dropped; " +
      "so is a reader that takes nothing while send_buffer_bytes are held for it",
  },
  {
    key: "buffered_bytes",
    field: "bufferedBytes",
    default: 32 * MIB,
    min: 1 * MIB,
    max: 64 * 1024 * MIB,
    doc: "bytes of partly received requests held per listener",
  },
  {
    key: "watch_history_events",
    field: "watchHistoryEvents",
    default: 10_000,
    min: 1,
    max: 10_000_000,
    doc: "commits of changes kept for watches to resume from (older: WatchCompactedError)",
  },
  {
    key: "watch_history_bytes",
    field: "watchHistoryBytes",
    default: 16 * MIB,
    min: 64 * KIB,
    max: 16 * 1024 * MIB,
    doc: "bytes of keys and values in the change history kept for watches",
  },
  {
    key: "send_buffer_bytes",
    field: "sendBufferBytes",
    default: 4 * MIB,
    min: 64 * KIB,
    max: 1024 * MIB,
    doc: "bytes held unsent for one slow reader (a watch stream, a client connection); " +
      "stalled there for request_timeout_ms: the stream is ended (watch_slow_reader)",
  },
  // Atomic operations (every front end: KV Connect, the binary protocol, HTTP): Deno KV's own
  // limits by default (limits.rs), checked once, by the service, before anything is proposed.
  {
    key: "atomic_checks",
    field: "atomicChecks",
    default: 10,
    min: 0,
    max: 10_000,
    doc: "checks per atomic operation",
  },
  {
    key: "atomic_mutations",
    field: "atomicMutations",
    default: 1000,
    min: 1,
    max: 100_000,
    doc: "mutations per atomic operation",
  },
  {
    key: "atomic_key_bytes",
    field: "atomicKeyBytes",
    default: 2048,
    min: 1,
    max: MAX_KEY_BYTES - 1,
    doc: "longest key of an atomic mutation (a check's: one byte more)",
  },
  {
    key: "atomic_value_bytes",
    field: "atomicValueBytes",
    default: 64 * KIB,
    min: 1,
    max: MAX_VALUE_BYTES,
    doc: "largest value of an atomic mutation",
  },
  {
    key: "atomic_total_bytes",
    field: "atomicTotalBytes",
    default: 800 * KIB,
    min: 1 * KIB,
    max: MAX_VALUE_BYTES,
    doc: "bytes of keys and values per atomic operation",
  },
  // KV Connect (`Deno.openKv(url)`) reads and watches: Deno KV's own limits by default.
  {
    key: "kv_connect_read_key_bytes",
    field: "kvConnectReadKeyBytes",
    default: 2049,
    min: 1,
    max: MAX_KEY_BYTES,
    doc: "KV Connect: longest key of a read",
  },
  {
    key: "kv_connect_read_ranges",
    field: "kvConnectReadRanges",
    default: 10,
    min: 1,
    max: 1000,
    doc: "KV Connect: ranges per snapshot read",
  },
  {
    key: "kv_connect_read_entries",
    field: "kvConnectReadEntries",
    default: 1000,
    min: 1,
    max: MAX_SCAN_PAGE_PAIRS,
    doc: "KV Connect: entries per snapshot read (all ranges)",
  },
  {
    key: "kv_connect_watched_keys",
    field: "kvConnectWatchedKeys",
    default: 10,
    min: 1,
    max: 10_000,
    doc: "KV Connect: keys per watch",
  },
];

/** The node limits with every default. */
export function defaultNodeLimits(): NodeLimits {
  const out = {} as NodeLimits;
  for (const s of NODE_LIMIT_SPECS) out[s.field] = s.default;
  return out;
}

/**
 * A request over a limit, refused before anything entered the Raft log. `limit` names the limit
 * (`key_bytes`, `value_bytes`, `http_body_bytes`, ...), `max` is its value and `actual` what the
 * request had (when known). Maps to wire status `LimitExceeded`, HTTP 413 (sizes of what was
 * sent) or 400, and CLI exit code 1.
 */
export class LimitError extends Error {
  /** Creates the error. */
  constructor(
    readonly limit: string,
    readonly max: number,
    readonly actual?: number,
    message?: string,
  ) {
    super(
      message ??
        `${limit} limit exceeded: ${actual !== undefined ? `${actual} > ` : "at most "}${max}`,
    );
    this.name = "LimitError";
  }
}

/** Checks a key's length against {@link MAX_KEY_BYTES} (an empty key is the caller's
 * invalid argument, not a limit). */
export function checkKey(key: Uint8Array): void {
  if (key.length > MAX_KEY_BYTES) throw new LimitError("key_bytes", MAX_KEY_BYTES, key.length);
}

/** Checks a value: at most {@link MAX_VALUE_BYTES} bytes. */
export function checkValue(value: Uint8Array): void {
  if (value.length > MAX_VALUE_BYTES) {
    throw new LimitError("value_bytes", MAX_VALUE_BYTES, value.length);
  }
}

/** Why a command's key or value cannot be applied (the state machine's rule, the same on every
 * node), or undefined within the limits. */
export function commandSizeProblem(key: Uint8Array, value?: Uint8Array): string | undefined {
  if (key.length > MAX_KEY_BYTES) return `key of ${key.length} bytes exceeds ${MAX_KEY_BYTES}`;
  if (value && value.length > MAX_VALUE_BYTES) {
    return `value of ${value.length} bytes exceeds ${MAX_VALUE_BYTES}`;
  }
  return undefined;
}

/** Most keys in one getMany (Deno KV's entries per read). */
export const MAX_GET_MANY_KEYS = 1000;
/** Most expired keys one expiry sweep command deletes (the leader proposes another when more
 * are due). */
export const EXPIRY_SWEEP_MAX_KEYS = 1000;

/** The shape of an atomic operation the limits look at. */
export interface AtomicShape {
  /** The checks' keys. */
  checks: { key: Uint8Array }[];
  /** The mutations' keys and values (with the bytes the commit adds to a key, if any). */
  mutations: { key: Uint8Array; value?: Uint8Array; keySuffixBytes?: number }[];
}

/** The limits of an atomic operation ({@link NodeLimits}' `atomic*` fields). */
export type AtomicLimits = Pick<
  NodeLimits,
  "atomicChecks" | "atomicMutations" | "atomicKeyBytes" | "atomicValueBytes" | "atomicTotalBytes"
>;

/**
 * Checks an atomic operation against the `atomic_*` limits ({@link LimitError} named after the
 * limit's key). The one place they are checked: the service calls it before proposing anything,
 * whichever front end the operation came through.
 */
export function checkAtomic(op: AtomicShape, limits: AtomicLimits): void {
  if (op.checks.length > limits.atomicChecks) {
    throw new LimitError("atomic_checks", limits.atomicChecks, op.checks.length);
  }
  if (op.mutations.length > limits.atomicMutations) {
    throw new LimitError("atomic_mutations", limits.atomicMutations, op.mutations.length);
  }
  let total = 0;
  for (const c of op.checks) {
    // A check names a key as a read does: one byte more than a write's (Deno KV's rule).
    if (c.key.length > limits.atomicKeyBytes + 1) {
      throw new LimitError("atomic_key_bytes", limits.atomicKeyBytes + 1, c.key.length);
    }
    total += c.key.length;
  }
  for (const m of op.mutations) {
    const keyLen = m.key.length + (m.keySuffixBytes ?? 0);
    if (keyLen > limits.atomicKeyBytes) {
      throw new LimitError("atomic_key_bytes", limits.atomicKeyBytes, keyLen);
    }
    const v = m.value?.length ?? 0;
    if (v > limits.atomicValueBytes) {
      throw new LimitError("atomic_value_bytes", limits.atomicValueBytes, v);
    }
    total += keyLen + v;
  }
  if (total > limits.atomicTotalBytes) {
    throw new LimitError("atomic_total_bytes", limits.atomicTotalBytes, total);
  }
}

/** Most keys plus prefixes one watch selects. */
export const MAX_WATCH_SELECTORS = 100;
/** Most entries under the watched prefixes that a watch's initial state reports (more: start the
 * watch with `after`). */
export const MAX_WATCH_INITIAL_ENTRIES = 10_000;
/** Longest a watch poll waits for a change (ms). */
export const MAX_WATCH_WAIT_MS = 30_000;
/** Most commits one watch poll answers (the next poll continues). */
export const WATCH_POLL_MAX_EVENTS = 1000;
