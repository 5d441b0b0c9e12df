/**
 * The node's metrics (names documented in README "Metrics") and the wrappers that measure what
 * lower layers do not report: fsync latency (timing `LogStore.sync()`), apply latency and Raft
 * snapshot durations (timing the state machine), Raft messages by type (counting at the
 * transport).
 *
 * A scrape ({@link ServerMetrics.scrape}) reads the Raft status once and the storage statistics
 * once and sets every sampled gauge and mirrored counter from them before rendering.
 *
 * @module
 */
import type { LogStore } from "../raft/storage.ts";
import type { ApplyCommand } from "../raft/state_machine.ts";
import type { Transport } from "../raft/transport.ts";
import { type Message, MessageType } from "../raft/types.ts";
import type { KvStateMachine } from "../storage/kv_state_machine.ts";
import {
  Counter,
  DURATION_BUCKETS,
  Gauge,
  Histogram,
  type HistogramSeries,
  LATENCY_BUCKETS,
  LatencyHistogram,
  Registry,
} from "./metrics.ts";

/** A node's metrics as an embedding program sees them. */
export interface NodeMetrics {
  /** Samples the Raft status and the storage statistics once, then renders every metric in the
   * Prometheus text format (what `GET /metrics` answers). */
  scrape(): Promise<string>;
  /** The exposition format's content type. */
  readonly contentType: string;
}

/** What the HTTP API needs of the metrics: `/metrics` and one observation per request. */
export interface HttpMetrics extends NodeMetrics {
  /** Records one HTTP request (the route label is the path's template, see {@link httpRoute}). */
  observeHttp(method: string, path: string, status: number, seconds: number): void;
}

/** Everything the server measures. */
export interface ServerMetrics extends HttpMetrics {
  /** The node's registry (prom-client). */
  registry: Registry;
  /** Proposals submitted. */
  proposals: Counter;
  /** Proposals that failed (not leader, timeout, dropped). */
  proposalsFailed: Counter;
  /** Entries committed (sampled from the commit index). */
  commits: Counter;
  /** Entries applied to the state machine. */
  applies: Counter;
  /** Local reads served. */
  reads: Counter;
  /** Elections observed (term increases). */
  elections: Counter;
  /** Leader changes observed. */
  leaderChanges: Counter;
  /** Client connections accepted. */
  connections: Counter;
  /** Client connections closed for protocol violations. */
  protocolErrors: Counter;
  /** HTTP requests by method, route and status. */
  httpRequests: Counter<"method" | "route" | "status">;
  /** HTTP request latency (to the response headers) by method, route and status. */
  httpRequestSeconds: Histogram<"method" | "route" | "status">;
  /** Client protocol request latency by op. */
  requestSeconds: LatencyHistogram<"op">;
  /** Client protocol requests answered with an error, by op and status. */
  requestErrors: Counter<"op" | "status">;
  /** ReadIndex barrier latency. */
  readIndexSeconds: LatencyHistogram;
  /** Log fsync (LogStore.sync) latency. */
  fsyncSeconds: LatencyHistogram;
  /** State machine apply latency (per batch of committed entries). */
  applySeconds: LatencyHistogram;
  /** Raft messages handed to the transport, by type. */
  raftMessagesSent: Counter<"type">;
  /** Raft messages received from peers, by type. */
  raftMessagesReceived: Counter<"type">;
  /** Raft snapshots: the state machine's serialization (`create`) and installation (`restore`). */
  snapshotSeconds: Histogram<"kind">;
  /** Backups (`gokv snapshot save`) streamed completely. */
  snapshotSaves: Counter;
  /** Duration of a backup, from the request to the last byte. */
  snapshotSaveSeconds: Histogram;
  /** LSM background work by kind (`flush`, `compaction`, `move`). */
  lsmBackgroundSeconds: Histogram<"kind">;
}

/** Values sampled at scrape time. */
export interface MetricSources {
  /** Raft status numbers. */
  raft: () => {
    term: number;
    commit: number;
    applied: number;
    isLeader: boolean;
    logSize: number;
    snapshotIndex?: number;
  };
  /** Storage statistics (the state machine's `stats()`). */
  storage: () => Record<string, unknown>;
  /** The watch streams (server/watch_stream.ts `WatchStreams`), when the node has them. */
  watch?: () => { bufferedBytes: number; open: number; slowReaders: number } | undefined;
}

const ROUTES: Array<[RegExp, string]> = [
  [/^\/v1\/kv\/.+/, "/v1/kv/{key}"],
  [/^\/v1\/kv\/?$/, "/v1/kv"],
  [/^\/v1\/members\/[^/]+$/, "/v1/members/{id}"],
  [/^\/ui(\/.*)?$/, "/ui"],
];

/**
 * The route label of an HTTP path: the path itself for fixed routes (`/v1/status`), a template
 * for routes with parameters (`/v1/kv/{key}`), `other` for anything unknown (so a client cannot
 * create unbounded label values).
 */
export function httpRoute(path: string): string {
  for (const [re, name] of ROUTES) if (re.test(path)) return name;
  if (/^\/(v1\/[a-z_]+(\/[a-z_]+)?|healthz|metrics)$/.test(path) && path.length <= 40) return path;
  return "other";
}

const METHODS = new Set(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"]);

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** Sets a counter that mirrors a monotonic value read elsewhere (an LSM statistic). */
function mirror(c: Counter, v: number | undefined): void {
  c.reset();
  if (v !== undefined && v > 0) c.inc(v);
}

/** Creates the node's metrics. */
export function createServerMetrics(src: MetricSources): ServerMetrics {
  const r = new Registry();
  const registers = [r];
  const counter = (name: string, help: string) => new Counter({ name, help, registers });
  const gauge = (name: string, help: string, labelNames: string[] = []) =>
    new Gauge({ name, help, labelNames, registers });
  const lat = (name: string, help: string) =>
    new LatencyHistogram({ name, help, buckets: LATENCY_BUCKETS, registers });

  const httpRequests = new Counter({
    name: "gokv_http_requests_total",
    help: "HTTP requests served, by method, route and status code.",
    labelNames: ["method", "route", "status"] as const,
    registers,
  });
  const httpRequestSeconds = new Histogram({
    name: "gokv_http_request_seconds",
    help: "HTTP request latency until the response headers, by method, route and status code.",
    labelNames: ["method", "route", "status"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });

  // Sampled at scrape time.
  const g = {
    term: gauge("gokv_raft_term", "Current Raft term."),
    commit: gauge("gokv_raft_commit_index", "Highest committed log index."),
    applied: gauge("gokv_raft_applied_index", "Highest applied log index."),
    leader: gauge("gokv_raft_is_leader", "1 when this node is the leader."),
    logEntries: gauge("gokv_raft_log_entries", "Entries in the Raft log (after the snapshot)."),
    snapIndex: gauge("gokv_raft_snapshot_index", "Index of the latest Raft snapshot."),
    sessions: gauge("gokv_sm_sessions", "Client sessions in the state machine."),
    keys: gauge("gokv_sm_keys", "User keys (memory and simplefile backends only)."),
    levelBytes: gauge("gokv_lsm_level_bytes", "Bytes of SSTables per LSM level.", ["level"]),
    levelFiles: gauge("gokv_lsm_level_files", "SSTables per LSM level.", ["level"]),
    memtable: gauge("gokv_lsm_memtable_bytes", "Bytes in the active and frozen memtables."),
    immutables: gauge("gokv_lsm_immutable_memtables", "Frozen memtables waiting for a flush."),
    cacheBytes: gauge("gokv_lsm_block_cache_bytes", "Bytes in the LSM block cache."),
    metaBytes: gauge("gokv_lsm_table_meta_bytes", "Bytes of SSTable index and filter blocks."),
    liveSnapshots: gauge("gokv_lsm_live_snapshots", "LSM snapshots not yet released."),
    watchBuffered: gauge(
      "gokv_watch_buffered_bytes",
      "Bytes queued for watch stream readers (HTTP and KV Connect), not yet taken by them.",
    ),
    watchStreams: gauge("gokv_watch_streams", "Open watch streams (HTTP and KV Connect)."),
  };
  const watchSlow = counter(
    "gokv_watch_slow_readers_total",
    "Watch streams ended because their reader took nothing while send_buffer_bytes were queued.",
  );
  const lsmCounters: Array<[Counter, string, number]> = [
    [counter("gokv_lsm_compactions_total", "Completed LSM compactions."), "compactions", 1],
    [counter("gokv_lsm_flushes_total", "Completed memtable flushes."), "flushes", 1],
    [counter("gokv_lsm_block_cache_hits_total", "Block cache hits."), "cacheHits", 1],
    [counter("gokv_lsm_block_cache_misses_total", "Block cache misses."), "cacheMisses", 1],
    [
      counter("gokv_lsm_write_stalls_total", "Writes that waited for compaction."),
      "writeStalls",
      1,
    ],
    [
      counter("gokv_lsm_write_stall_seconds_total", "Time writes waited for compaction."),
      "writeStallMs",
      1 / 1000,
    ],
    [counter("gokv_lsm_syncs_total", "LSM write-ahead log syncs."), "syncs", 1],
    [
      counter("gokv_lsm_compaction_read_bytes_total", "Bytes read by compactions."),
      "compactionBytesRead",
      1,
    ],
    [
      counter("gokv_lsm_compaction_written_bytes_total", "Bytes written by compactions."),
      "compactionBytesWritten",
      1,
    ],
  ];

  const sample = () => {
    const w = src.watch?.();
    if (w) {
      g.watchBuffered.set(w.bufferedBytes);
      g.watchStreams.set(w.open);
      mirror(watchSlow, w.slowReaders);
    }
    try {
      const s = src.raft();
      g.term.set(s.term);
      g.commit.set(s.commit);
      g.applied.set(s.applied);
      g.leader.set(s.isLeader ? 1 : 0);
      g.logEntries.set(s.logSize);
      if (s.snapshotIndex !== undefined) g.snapIndex.set(s.snapshotIndex);
    } catch { /* not started yet */ }
    let st: Record<string, unknown>;
    try {
      st = src.storage();
    } catch {
      return;
    }
    const sessions = num(st.sessions);
    if (sessions !== undefined) g.sessions.set(sessions);
    const keys = num(st.keys);
    if (keys !== undefined) g.keys.set(keys);
    const lsm = st.lsm && typeof st.lsm === "object" ? st.lsm as Record<string, unknown> : null;
    g.levelBytes.reset();
    g.levelFiles.reset();
    if (!lsm) return;
    for (const l of Array.isArray(lsm.levels) ? lsm.levels : []) {
      const level = String((l as { level?: unknown }).level);
      const bytes = num((l as { bytes?: unknown }).bytes);
      const files = num((l as { files?: unknown }).files);
      if (bytes !== undefined) g.levelBytes.set({ level }, bytes);
      if (files !== undefined) g.levelFiles.set({ level }, files);
    }
    const set = (gg: Gauge, k: string) => {
      const v = num(lsm[k]);
      if (v !== undefined) gg.set(v);
    };
    set(g.memtable, "memtableBytes");
    set(g.immutables, "immutableMemtables");
    set(g.cacheBytes, "cacheBytes");
    set(g.metaBytes, "tableMetaBytes");
    set(g.liveSnapshots, "liveSnapshots");
    for (const [c, k, scale] of lsmCounters) {
      const v = num(lsm[k]);
      mirror(c, v === undefined ? undefined : v * scale);
    }
  };

  const m: ServerMetrics = {
    registry: r,
    proposals: counter("gokv_proposals_total", "Proposals submitted to Raft by this node."),
    proposalsFailed: counter(
      "gokv_proposals_failed_total",
      "Proposals that failed (not leader, timeout, dropped).",
    ),
    commits: counter(
      "gokv_commits_total",
      "Log entries committed, as observed by this node (sampled every 100 ms).",
    ),
    applies: counter("gokv_applies_total", "Log entries applied to the state machine."),
    reads: counter("gokv_reads_total", "Reads (get and scan) served from local state."),
    elections: counter("gokv_elections_total", "Elections observed (term increases)."),
    leaderChanges: counter("gokv_leader_changes_total", "Leader changes observed."),
    connections: counter("gokv_client_connections_total", "Client connections accepted."),
    protocolErrors: counter(
      "gokv_client_protocol_errors_total",
      "Client connections closed because of malformed bytes.",
    ),
    httpRequests,
    httpRequestSeconds,
    requestSeconds: new LatencyHistogram({
      name: "gokv_request_seconds",
      help: "Latency of client protocol requests served by this node, by operation.",
      labelNames: ["op"] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    requestErrors: new Counter({
      name: "gokv_request_errors_total",
      help: "Client protocol requests answered with an error status, by operation and status.",
      labelNames: ["op", "status"] as const,
      registers,
    }),
    readIndexSeconds: lat("gokv_read_index_seconds", "Latency of ReadIndex barriers."),
    fsyncSeconds: lat("gokv_fsync_seconds", "Latency of Raft log syncs (fsync)."),
    applySeconds: lat(
      "gokv_apply_seconds",
      "Latency of applying one batch of committed entries to the state machine.",
    ),
    raftMessagesSent: new Counter({
      name: "gokv_raft_messages_sent_total",
      help: "Raft messages handed to the peer transport, by message type.",
      labelNames: ["type"] as const,
      registers,
    }),
    raftMessagesReceived: new Counter({
      name: "gokv_raft_messages_received_total",
      help: "Raft messages received from peers, by message type.",
      labelNames: ["type"] as const,
      registers,
    }),
    snapshotSeconds: new Histogram({
      name: "gokv_raft_snapshot_seconds",
      help: "Raft snapshots: serializing the state machine (kind=create) or installing one " +
        "received from the leader (kind=restore).",
      labelNames: ["kind"] as const,
      buckets: DURATION_BUCKETS,
      registers,
    }),
    snapshotSaves: counter(
      "gokv_snapshot_saves_total",
      "Backups (gokv snapshot save) streamed completely by this node.",
    ),
    snapshotSaveSeconds: new Histogram({
      name: "gokv_snapshot_save_seconds",
      help: "Duration of a backup from the request to the last byte.",
      buckets: DURATION_BUCKETS,
      registers,
    }),
    lsmBackgroundSeconds: new Histogram({
      name: "gokv_lsm_background_seconds",
      help: "Duration of LSM background work: memtable flushes (kind=flush), compactions " +
        "(kind=compaction) and trivial moves (kind=move).",
      labelNames: ["kind"] as const,
      buckets: DURATION_BUCKETS,
      registers,
    }),
    observeHttp(method, path, status, seconds) {
      const labels = {
        method: METHODS.has(method) ? method : "other",
        route: httpRoute(path),
        status: String(status),
      };
      httpRequests.inc(labels);
      httpRequestSeconds.observe(labels, seconds);
    },
    async scrape() {
      sample();
      return await r.metrics();
    },
    contentType: r.contentType,
  };
  return m;
}

/** Wraps a log store so every `sync()` is timed into `hist` (plain delegation: the Raft core
 * calls the read methods often). */
export function timedLogStore(log: LogStore, hist: HistogramSeries): LogStore {
  return {
    initialState: () => log.initialState(),
    entries: (lo, hi, maxBytes) => log.entries(lo, hi, maxBytes),
    term: (index) => log.term(index),
    firstIndex: () => log.firstIndex(),
    lastIndex: () => log.lastIndex(),
    snapshotMeta: () => log.snapshotMeta(),
    snapshot: () => log.snapshot(),
    append: (entries) => log.append(entries),
    setHardState: (hs) => log.setHardState(hs),
    applySnapshot: (snap) => log.applySnapshot(snap),
    createSnapshot: (snap) => log.createSnapshot(snap),
    sync: async () => {
      const t0 = performance.now();
      try {
        await log.sync();
      } finally {
        hist.observe((performance.now() - t0) / 1000);
      }
    },
    close: () => log.close(),
  };
}

async function timed<T>(h: Histogram<"kind">, kind: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  h.observe({ kind }, (performance.now() - t0) / 1000);
  return out;
}

/** Wraps a state machine so applied entries are counted, apply batches and Raft snapshots
 * timed. */
export function countingStateMachine(
  sm: KvStateMachine,
  m: Pick<ServerMetrics, "applies" | "applySeconds" | "snapshotSeconds">,
): KvStateMachine {
  return {
    appliedIndex: () => sm.appliedIndex(),
    appliedLastChange: () => sm.appliedLastChange(),
    apply: async (cmds: ApplyCommand[]) => {
      m.applies.inc(cmds.length);
      const t0 = performance.now();
      try {
        return await sm.apply(cmds);
      } finally {
        m.applySeconds.observe((performance.now() - t0) / 1000);
      }
    },
    snapshot: () => timed(m.snapshotSeconds, "create", () => sm.snapshot()),
    restore: (data, index) => timed(m.snapshotSeconds, "restore", () => sm.restore(data, index)),
    exportState: () => sm.exportState(),
    importState: (src) => sm.importState(src),
    close: () => sm.close(),
    get: (key) => sm.get(key),
    scan: (opts) => sm.scan(opts),
    getEntries: (keys) => sm.getEntries(keys),
    scanEntries: (opts) => sm.scanEntries(opts),
    nextExpiry: () => sm.nextExpiry(),
    get onChanges() {
      return sm.onChanges;
    },
    set onChanges(f) {
      sm.onChanges = f;
    },
    get onReset() {
      return sm.onReset;
    },
    set onReset(f) {
      sm.onReset = f;
    },
    watchState: (keys, prefixes, max) => sm.watchState(keys, prefixes, max),
    stats: () => sm.stats(),
    sessionCount: () => sm.sessionCount(),
    session: (id) => sm.session(id),
    sessionList: () => sm.sessionList(),
    clock: () => sm.clock(),
    clusterId: () => sm.clusterId(),
  };
}

/** The label value of a message type (`App`, `Heartbeat`, ...). */
function typeName(t: MessageType): string {
  return MessageType[t] ?? `type${t}`;
}

/** Wraps a transport so every Raft message sent and received is counted by type. */
export function countingTransport(
  t: Transport,
  m: Pick<ServerMetrics, "raftMessagesSent" | "raftMessagesReceived">,
): Transport {
  // One bound child per type: no label hashing per message.
  const sent = new Map<MessageType, { inc(n?: number): void }>();
  const recv = new Map<MessageType, { inc(n?: number): void }>();
  const child = (
    map: Map<MessageType, { inc(n?: number): void }>,
    c: Counter<"type">,
    type: MessageType,
  ) => {
    let x = map.get(type);
    if (!x) map.set(type, x = c.labels({ type: typeName(type) }));
    return x;
  };
  return {
    start: (handler) =>
      t.start((msg: Message) => {
        child(recv, m.raftMessagesReceived, msg.type).inc();
        handler(msg);
      }),
    send: (msgs) => {
      for (const msg of msgs) child(sent, m.raftMessagesSent, msg.type).inc();
      t.send(msgs);
    },
    addPeer: (id, address) => t.addPeer(id, address),
    removePeer: (id) => t.removePeer(id),
    close: () => t.close(),
  };
}
