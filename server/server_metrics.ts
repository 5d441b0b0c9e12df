/**
 * The node's metrics and the wrappers that measure what lower layers do not report: fsync
 * latency (by timing `LogStore.sync()`) and applied entries (by counting `StateMachine.apply`).
 *
 * @module
 */
import type { LogStore } from "../raft/storage.ts";
import type { ApplyCommand } from "../raft/state_machine.ts";
import type { KvStateMachine } from "../storage/kv_state_machine.ts";
import {
  type Counter,
  type CounterVec,
  type Histogram,
  type HistogramVec,
  Registry,
} from "./metrics.ts";

/** Everything the server measures. */
export interface ServerMetrics {
  /** The registry to render. */
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
  /** HTTP requests served. */
  httpRequests: Counter;
  /** Client protocol request latency by op. */
  requestSeconds: HistogramVec;
  /** Client protocol requests answered with an error, by op and status. */
  requestErrors: CounterVec;
  /** ReadIndex barrier latency. */
  readIndexSeconds: Histogram;
  /** Log fsync (LogStore.sync) latency. */
  fsyncSeconds: Histogram;
  /** State machine apply latency (per batch of committed entries). */
  applySeconds: Histogram;
  /** Backups (`gokv snapshot save`) streamed completely. */
  snapshotSaves: Counter;
  /** Duration of a backup, from the request to the last byte. */
  snapshotSaveSeconds: Histogram;
}

/** Values sampled at scrape time. */
export interface MetricSources {
  /** Raft status numbers. */
  raft: () => { term: number; commit: number; applied: number; isLeader: boolean; logSize: number };
  /** Storage statistics (from the state machine). */
  storage: () => Record<string, unknown>;
}

function snake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^a-zA-Z0-9_]/g, "_").toLowerCase();
}

/** Flattens numeric storage statistics into labeled samples; `levels` arrays become
 * per-level samples. */
export function storageSamples(
  stats: Record<string, unknown>,
): Array<{ name: string; labels?: Record<string, string>; value: number }> {
  const out: Array<{ name: string; labels?: Record<string, string>; value: number }> = [];
  const walk = (prefix: string, v: unknown, depth: number) => {
    if (typeof v === "number" && Number.isFinite(v)) {
      out.push({ name: prefix, value: v });
    } else if (typeof v === "boolean") {
      out.push({ name: prefix, value: v ? 1 : 0 });
    } else if (Array.isArray(v) && depth < 3) {
      v.forEach((item, i) => {
        if (item && typeof item === "object") {
          const o = item as Record<string, unknown>;
          const level = String(o.level ?? i);
          for (const [k, x] of Object.entries(o)) {
            if (k === "level") continue;
            if (typeof x === "number" && Number.isFinite(x)) {
              out.push({ name: `${prefix}_${snake(k)}`, labels: { level }, value: x });
            }
          }
        } else if (typeof item === "number") {
          out.push({ name: prefix, labels: { level: String(i) }, value: item });
        }
      });
    } else if (v && typeof v === "object" && depth < 3) {
      for (const [k, x] of Object.entries(v)) walk(`${prefix}_${snake(k)}`, x, depth + 1);
    }
  };
  for (const [k, v] of Object.entries(stats)) walk(snake(k), v, 0);
  return out;
}

/** Creates the node's metrics. */
export function createServerMetrics(src: MetricSources): ServerMetrics {
  const r = new Registry();
  const m: ServerMetrics = {
    registry: r,
    proposals: r.counter("gokv_proposals_total", "Proposals submitted to Raft by this node."),
    proposalsFailed: r.counter(
      "gokv_proposals_failed_total",
      "Proposals that failed (not leader, timeout, dropped).",
    ),
    commits: r.counter(
      "gokv_commits_total",
      "Log entries committed, as observed by this node (sampled every 100 ms).",
    ),
    applies: r.counter("gokv_applies_total", "Log entries applied to the state machine."),
    reads: r.counter("gokv_reads_total", "Reads (get and scan) served from local state."),
    elections: r.counter("gokv_elections_total", "Elections observed (term increases)."),
    leaderChanges: r.counter("gokv_leader_changes_total", "Leader changes observed."),
    connections: r.counter("gokv_client_connections_total", "Client connections accepted."),
    protocolErrors: r.counter(
      "gokv_client_protocol_errors_total",
      "Client connections closed because of malformed bytes.",
    ),
    httpRequests: r.counter("gokv_http_requests_total", "HTTP requests served."),
    requestSeconds: r.histogramVec(
      "gokv_request_seconds",
      "Latency of client protocol requests served by this node, by operation.",
      "op",
    ),
    requestErrors: r.counterVec(
      "gokv_request_errors_total",
      "Client protocol requests answered with an error status, by operation and status.",
    ),
    readIndexSeconds: r.histogram("gokv_read_index_seconds", "Latency of ReadIndex barriers."),
    fsyncSeconds: r.histogram("gokv_fsync_seconds", "Latency of Raft log syncs (fsync)."),
    applySeconds: r.histogram(
      "gokv_apply_seconds",
      "Latency of applying one batch of committed entries to the state machine.",
    ),
    snapshotSaves: r.counter(
      "gokv_snapshot_saves_total",
      "Backups (gokv snapshot save) streamed completely by this node.",
    ),
    snapshotSaveSeconds: r.histogram(
      "gokv_snapshot_save_seconds",
      "Duration of a backup from the request to the last byte.",
      [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800],
    ),
  };
  r.gauge("gokv_raft_term", "Current Raft term.", () => src.raft().term);
  r.gauge(
    "gokv_raft_commit_index",
    "Highest committed log index (commits).",
    () => src.raft().commit,
  );
  r.gauge("gokv_raft_applied_index", "Highest applied log index.", () => src.raft().applied);
  r.gauge(
    "gokv_raft_is_leader",
    "1 when this node is the leader.",
    () => src.raft().isLeader ? 1 : 0,
  );
  r.gauge("gokv_raft_log_entries", "Entries in the Raft log.", () => src.raft().logSize);
  r.gauge(
    "gokv_storage_stat",
    "Storage engine statistics (name label; LSM level sizes and compactions included).",
    () =>
      storageSamples(src.storage()).map((s) => ({
        labels: { name: s.name, ...s.labels },
        value: s.value,
      })),
  );
  const lsm = () => {
    const l = src.storage().lsm as
      | { levels?: { level: number; files: number; bytes: number }[]; compactions?: number }
      | undefined;
    return l && typeof l === "object" ? l : undefined;
  };
  r.gauge(
    "gokv_lsm_level_bytes",
    "Bytes of SSTables per LSM level.",
    () =>
      (lsm()?.levels ?? []).map((x) => ({ labels: { level: String(x.level) }, value: x.bytes })),
  );
  r.gauge(
    "gokv_lsm_level_files",
    "SSTables per LSM level.",
    () =>
      (lsm()?.levels ?? []).map((x) => ({ labels: { level: String(x.level) }, value: x.files })),
  );
  r.gauge(
    "gokv_lsm_compactions",
    "Completed LSM compactions since the node started (a counter read at scrape time).",
    () => {
      const c = lsm()?.compactions;
      return typeof c === "number" ? [{ value: c }] : [];
    },
  );
  return m;
}

/** Wraps a log store so every `sync()` is timed into `hist` (plain delegation: the Raft core
 * calls the read methods often). */
export function timedLogStore(log: LogStore, hist: Histogram): LogStore {
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

/** Wraps a state machine so applied entries are counted and apply batches timed. */
export function countingStateMachine(
  sm: KvStateMachine,
  applies: Counter,
  applySeconds?: Histogram,
): KvStateMachine {
  return {
    appliedIndex: () => sm.appliedIndex(),
    apply: async (cmds: ApplyCommand[]) => {
      applies.inc(cmds.length);
      const t0 = performance.now();
      try {
        return await sm.apply(cmds);
      } finally {
        applySeconds?.observe((performance.now() - t0) / 1000);
      }
    },
    snapshot: () => sm.snapshot(),
    restore: (data, index) => sm.restore(data, index),
    exportState: () => sm.exportState(),
    importState: (src) => sm.importState(src),
    close: () => sm.close(),
    get: (key) => sm.get(key),
    scan: (opts) => sm.scan(opts),
    stats: () => sm.stats(),
    sessions: () => sm.sessions(),
  };
}
