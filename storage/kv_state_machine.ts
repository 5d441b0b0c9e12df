/**
 * The KV state machine contract shared by every backend. The semantics (key layout, sessions,
 * apply rules) live once in kv_core.ts; the backends provide an ordered store.
 *
 * ## Apply results
 *
 * `apply()` returns one {@link EntryResult} per entry: for a batch entry, an array of one
 * {@link ApplyResult} per command of the batch; otherwise the command's {@link ApplyResult}:
 * - `null` for an empty command (a leader's no-op or a conf change): only the applied index moves;
 * - `{ ok: true, versionstamp }` for a Put, Delete or committed Atomic (the put path never reads
 *   the old value); `{ ok: true, versionstamp, expired, more }` for an expiry sweep; a retry of a
 *   session's last command answers that command's result again (cached in the session record);
 * - `{ ok: true, sessionId }` for a session registration (the id is the command's log index);
 * - `{ ok: true, clusterId }` for a SetClusterId: the cluster id in force after it (its own id
 *   when it was the first one applied, the earlier one otherwise);
 * - `{ ok: false, error, message }` when nothing was changed: `bad_command` (bytes that are not a
 *   valid command, or a key or value over `MAX_KEY_BYTES` / `MAX_VALUE_BYTES`), `bad_session`
 *   (session id 0), `session_expired` (unknown or expired session), `session_seq` (a seq at or
 *   below the session's last one with a different command), `check_failed` (an Atomic whose
 *   checks at `failedChecks` failed), `value_type` (an Atomic's sum/min/max met a stored value that
 *   is not a u64, or a bounded sum left its range: Deno KV's message). The applied index still
 *   moves.
 *
 * The data model (encodings, versionstamps, expiry, atomic operations) is in kv_model.ts.
 *
 * @module
 */
import type { ApplyCommand, StateMachine } from "../raft/state_machine.ts";
import type { KvEntry, ValueEncoding } from "./kv_model.ts";

export {
  type AtomicCheck,
  type AtomicMutation,
  type AtomicOperation,
  type AtomicResult,
  type KvEntry,
  ValueEncoding,
} from "./kv_model.ts";

/** A range and/or prefix query over user keys. */
export interface ScanOptions {
  /** Inclusive lower bound. */
  start?: Uint8Array;
  /** Exclusive upper bound. */
  end?: Uint8Array;
  /** Only keys with this prefix. */
  prefix?: Uint8Array;
  /** At most this many pairs. */
  limit?: number;
  /** Stop right after the pair that brings the bytes of keys and values returned above this
   * (so a caller keeping pairs up to the budget knows whether more follow). */
  maxBytes?: number;
  /** Descending key order. */
  reverse?: boolean;
}

/** The result of a successfully applied Put, Delete, Atomic or expiry sweep. */
export interface OkResult {
  /** Always true. */
  ok: true;
  /** The write's versionstamp (absent only for a cached result of an older format). */
  versionstamp?: Uint8Array;
  /** Expiry sweep: keys deleted. */
  expired?: number;
  /** Expiry sweep: more keys were due than it deleted. */
  more?: boolean;
}

/** The result of a session registration. */
export interface RegisterResult {
  /** Always true. */
  ok: true;
  /** The new session's id (the registration's log index). */
  sessionId: bigint;
}

/** The result of a SetClusterId command. */
export interface ClusterIdResult {
  /** Always true. */
  ok: true;
  /** The cluster id in force (the first one applied). */
  clusterId: string;
}

/** Why a command changed nothing. */
export type ApplyErrorCode =
  | "bad_command"
  | "bad_session"
  | "session_expired"
  | "session_seq"
  | "check_failed"
  | "value_type";

/** The result of a command that was refused at apply time. */
export interface ErrorResult {
  /** Always false. */
  ok: false;
  /** The error code. */
  error: ApplyErrorCode;
  /** What was wrong. */
  message: string;
  /** `check_failed`: the indexes of the failed checks. */
  failedChecks?: number[];
}

/** One command's result (see the module documentation). */
export type ApplyResult = OkResult | RegisterResult | ClusterIdResult | ErrorResult | null;

/** One entry's result: a command's, or for a batch entry (storage/command.ts encodeBatch) one
 * per command of the batch, in order (a batch whose framing is malformed gets one `bad_command`). */
export type EntryResult = ApplyResult | ApplyResult[];

/** A client session as stored in the session table. */
export interface SessionInfo {
  /** The session id (the log index of its registration). */
  id: bigint;
  /** The highest sequence number applied for the session (0: none yet). */
  lastSeq: number;
  /** The state machine's clock when the session was last used (ms). */
  lastActive: number;
  /** The log index of the session's last use. */
  lastIndex: number;
  /** The position of that use in its entry (a batch entry's command; 0 otherwise): sessions
   * used by one entry are ordered by it. */
  lastPos?: number;
  /** Idle time after which the session expires (ms of the state machine's clock). */
  idleTimeoutMs: number;
  /** Hash of the last applied command (op and body). */
  hash: number;
  /** True once a command has been applied under the session. */
  hasResult: boolean;
  /** The last command's result, answered again to a retry (absent in records of an older
   * format). */
  result?: CachedResult;
}

/** What a session record keeps of its last command's result. */
export type CachedResult =
  | { kind: "ok"; versionstamp: Uint8Array }
  | { kind: "check_failed"; failedChecks: number[] }
  | { kind: "value_type"; message: string }
  | { kind: "plain" };

/** One user key of an exported state (a backup record). */
export interface StateEntry {
  /** The user key. */
  key: Uint8Array;
  /** Its value. */
  value: Uint8Array;
  /** Its 10-byte versionstamp (absent in backups of an older format). */
  versionstamp?: Uint8Array;
  /** Its value's encoding (absent: bytes). */
  encoding?: ValueEncoding;
  /** Its expiry time, ms since the epoch (absent: never). */
  expireAt?: number;
}

/**
 * A consistent view of the whole state at one applied index that is read incrementally (for
 * backups: nothing is buffered). Call `release()` when done, also after an error.
 */
export interface StateExport {
  /** The applied index the view reflects. */
  appliedIndex: number;
  /** Client sessions in the view. */
  sessionCount: number;
  /** The versionstamp of the last write the view includes, once the data model carries them. */
  versionstamp?: Uint8Array;
  /** The state machine's own records (session table, clock; kv_core.ts layout, opaque to the
   * caller) in key order, read from the view as they are consumed. */
  meta(): AsyncIterable<[Uint8Array, Uint8Array]>;
  /** The user keys in ascending key order, read from the view as they are consumed. */
  entries(): AsyncIterable<StateEntry>;
  /** Releases the view. Idempotent. */
  release(): void;
}

/** See {@link KvStateMachine.watchState}. */
export interface WatchState {
  /** The applied index the entries reflect. */
  appliedIndex: number;
  /** One per watched key (null: absent). */
  keys: (KvEntry | null)[];
  /** The entries under each watched prefix, in key order. */
  prefixes: KvEntry[][];
}

/** One change of a user key made by an applied command. */
export interface KvChange {
  /** The key. */
  key: Uint8Array;
  /** The new entry, or null: deleted (by a delete or an expiry sweep). */
  entry: KvEntry | null;
  /** The versionstamp of the command that made the change. */
  versionstamp: Uint8Array;
}

/** A whole state to import (backup restore), streamed in ascending order. */
export interface StateImport {
  /** The applied index the state reflects. */
  appliedIndex: number;
  /** The state machine's own records, as {@link StateExport.meta} gave them (consumed first). */
  meta: Iterable<[Uint8Array, Uint8Array]> | AsyncIterable<[Uint8Array, Uint8Array]>;
  /** The user keys, consumed once. An error thrown by the iterator aborts the import and
   * leaves the previous state in place. */
  entries: AsyncIterable<StateEntry>;
}

/** The replicated KV state machine. */
export interface KvStateMachine extends StateMachine {
  /** A consistent, incrementally read view of the whole state (see {@link StateExport}). */
  exportState(): Promise<StateExport>;
  /** Replaces the whole state with `src`, atomically: a failure keeps the old state. */
  importState(src: StateImport): Promise<void>;
  /** Applies committed entries in order: one {@link EntryResult} per entry. */
  apply(cmds: ApplyCommand[]): Promise<EntryResult[]>;
  /** The value of a user key, or undefined (also when expired by the state machine's clock). */
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /** User key/value pairs in key order (descending with `reverse`), from one consistent view. */
  scan(opts?: ScanOptions): Promise<Array<[Uint8Array, Uint8Array]>>;
  /** The entries of `keys` (null: absent or expired), all read from one consistent view. */
  getEntries(keys: Uint8Array[]): Promise<(KvEntry | null)[]>;
  /** The entries matching `opts` in key order, from one consistent view (expired ones hidden). */
  scanEntries(opts?: ScanOptions): Promise<KvEntry[]>;
  /** The earliest expiry time in the expiry index (ms), or undefined: nothing expires. May be a
   * time whose key was overwritten since (a sweep then only drops the index entry). */
  nextExpiry(): Promise<number | undefined>;
  /** The position of the last user-key change made by the entry at `appliedIndex()`: -1 when it
   * changed none, undefined when not known (the state was restored from a snapshot or a backup
   * at that index, or written by an earlier version). Kept with the applied index, so it is
   * known after a restart: a watch resuming inside that entry is served when nothing of the
   * entry follows its position (server/watch.ts). */
  appliedLastChange(): number | undefined;
  /** Called after every applied batch with the user-key changes it made, in commit order. */
  onChanges?: (changes: KvChange[]) => void;
  /** Called after the whole state was replaced (a Raft snapshot or a backup installed) with the
   * applied index it reflects: no change history leads there. */
  onReset?: (appliedIndex: number) => void;
  /** A watch's initial state from one consistent view: the entries of `keys` (null: absent),
   * every entry under each prefix, and the applied index they reflect. Throws RangeError when
   * the prefixes hold more than `maxEntries` entries. */
  watchState(
    keys: Uint8Array[],
    prefixes: Uint8Array[],
    maxEntries: number,
  ): Promise<WatchState>;
  /** Counters for monitoring (backend, keys, sessions, applied index...). */
  stats(): Record<string, unknown>;
  /** Sessions in the table. */
  sessionCount(): number;
  /** One session, or undefined when it is not in the table. */
  session(id: bigint): Promise<SessionInfo | undefined>;
  /** Every session, least recently used first (reads the whole table: inspection and tests). */
  sessionList(): Promise<SessionInfo[]>;
  /** The state machine's clock (ms): the largest command timestamp applied. */
  clock(): number;
  /** The cluster id, a UUID set by the first SetClusterId command applied (kv_core.ts); carried
   * in snapshots and backups. Undefined until then. */
  clusterId(): string | undefined;
}
