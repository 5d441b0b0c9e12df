/**
 * The KV state machine contract and the exactly-once apply rules shared by every backend.
 *
 * ## Apply results
 *
 * `apply()` returns one {@link ApplyResult} per command:
 * - `null` for an empty command (a leader's no-op or a conf change): only the applied index moves;
 * - `{ ok: true }` for a Put or Delete (the write path never reads the old value: a lookup per
 *   key would halve the LSM backend's apply rate and nothing needs it);
 * - the cached result of the original command when a session command is a duplicate
 *   (`seq <= lastSeq` for its client) — nothing changes then;
 * - `{ ok: false, error: "bad_command", message }` for bytes that are not a valid command, or a
 *   command whose key or value exceeds `MAX_KEY_BYTES` / `MAX_VALUE_BYTES` (command.ts; nothing
 *   changes, the applied index still moves; the session table is not updated).
 *
 * @module
 */
import type { StateMachine } from "../raft/state_machine.ts";
import { type Command, commandSizeError, decodeCommand } from "./command.ts";
import { DecodeError } from "./errors.ts";

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

/** The result of a successfully applied Put or Delete. */
export interface OkResult {
  /** Always true. */
  ok: true;
}

/** The result of a command whose bytes could not be decoded. */
export interface BadCommandResult {
  /** Always false. */
  ok: false;
  /** The error code. */
  error: "bad_command";
  /** What was wrong. */
  message: string;
}

/** One command's result (see the module documentation). */
export type ApplyResult = OkResult | BadCommandResult | null;

/** A client's entry in the session table. */
export interface SessionEntry {
  /** The highest sequence number applied for the client. */
  lastSeq: number;
  /** The result of that command. */
  lastResult: OkResult;
}

/** The session table: client id to its last applied command. */
export type SessionTable = Map<bigint, SessionEntry>;

/** One user key of an exported state (a backup record). */
export interface StateEntry {
  /** The user key. */
  key: Uint8Array;
  /** Its value. */
  value: Uint8Array;
  /** Its 10-byte versionstamp, once the data model carries them (absent before). */
  versionstamp?: Uint8Array;
}

/**
 * A consistent view of the whole state at one applied index that is read incrementally (for
 * backups: nothing is buffered). Call `release()` when done, also after an error.
 */
export interface StateExport {
  /** The applied index the view reflects. */
  appliedIndex: number;
  /** The session table as of that index. */
  sessions: ReadonlyMap<bigint, SessionEntry>;
  /** The versionstamp of the last write the view includes, once the data model carries them. */
  versionstamp?: Uint8Array;
  /** The user keys in ascending key order, read from the view as they are consumed. */
  entries(): AsyncIterable<StateEntry>;
  /** Releases the view. Idempotent. */
  release(): void;
}

/** A whole state to import (backup restore), its keys streamed in ascending order. */
export interface StateImport {
  /** The applied index the state reflects. */
  appliedIndex: number;
  /** The session table. */
  sessions: SessionTable;
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
  /** The value of a user key, or undefined. */
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /** User key/value pairs in key order (descending with `reverse`), from one consistent view. */
  scan(opts?: ScanOptions): Promise<Array<[Uint8Array, Uint8Array]>>;
  /** Counters for monitoring (backend, keys, sessions, applied index...). */
  stats(): Record<string, unknown>;
  /** The client session table (read-only view; for inspection and tests). */
  sessions(): ReadonlyMap<bigint, SessionEntry>;
}

/** What to do with one command, as decided by {@link planApply}. */
export type ApplyPlan =
  | { kind: "done"; result: ApplyResult }
  | { kind: "apply"; cmd: Command };

/**
 * Decodes a command and checks it against the session table: empty data is a no-op, undecodable
 * bytes a bad command, a duplicate session command answers from the cache; anything else must be
 * applied (then call {@link recordSession}).
 */
export function planApply(data: Uint8Array, sessions: SessionTable): ApplyPlan {
  if (data.length === 0) return { kind: "done", result: null };
  let cmd: Command;
  try {
    cmd = decodeCommand(data);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return { kind: "done", result: { ok: false, error: "bad_command", message: e.message } };
  }
  const tooBig = commandSizeError(cmd);
  if (tooBig) return { kind: "done", result: { ok: false, error: "bad_command", message: tooBig } };
  if (cmd.session) {
    const s = sessions.get(cmd.session.clientId);
    if (s && cmd.session.seq <= s.lastSeq) return { kind: "done", result: s.lastResult };
  }
  return { kind: "apply", cmd };
}

/** Records an applied command's result in the session table (no-op without a session). */
export function recordSession(
  cmd: Command,
  result: OkResult,
  sessions: SessionTable,
): SessionEntry | undefined {
  if (!cmd.session) return undefined;
  const entry = { lastSeq: cmd.session.seq, lastResult: result };
  sessions.set(cmd.session.clientId, entry);
  return entry;
}

/** Encodes an {@link OkResult} as one byte (for session storage). */
export function encodeResult(_r: OkResult): number {
  return 1;
}

/** Decodes {@link encodeResult}. */
export function decodeResult(b: number): OkResult {
  // 2 was written by an earlier format that recorded whether the key existed.
  if (b === 1 || b === 2) return { ok: true };
  throw new DecodeError("session result", `unknown result code ${b}`);
}
