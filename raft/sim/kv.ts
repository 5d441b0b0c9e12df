/**
 * The simulator's replicated key-value state machine and its command codec. Its client sessions
 * follow the real state machine's (storage/kv_core.ts, the Raft thesis §6.3) rule for rule:
 *
 * - A `register` command opens a session whose id is the command's log index. Before it is
 *   added, the least recently used sessions are evicted while the table holds `maxSessions` or
 *   more, and up to {@link EXPIRED_PER_REGISTER} expired ones (oldest first) in any case.
 * - The state machine's clock is the largest timestamp carried by an applied command (the
 *   proposer's clock reading; the state machine never reads a clock); a session unused for longer
 *   than its idle timeout by that clock is expired.
 * - A command with a session (id, seq): id 0 is refused (`bad_session`); an unknown or expired
 *   session is refused (`session_expired`, nothing changes, an expired one is removed); `seq`
 *   equal to the session's last seq with the same command answers the first attempt's result
 *   again (a retry); `seq` at or below the last one otherwise is refused (`session_seq`); a higher
 *   seq is applied and recorded. Every accepted use refreshes the session.
 * - A command without a session is applied as it comes (at most once per proposal).
 *
 * Command layout (little endian): kind u8 (1 put, 2 delete, 3 compare-and-set, 4 multi-key
 * atomic put, 5 register), flags u8 (bit 0: has a session), session id u32, seq u32, time f64
 * (virtual ms; 0: none), key length u16, key bytes, value bytes (the rest).
 *
 * A compare-and-set carries `{ expected, value }` as JSON in the value bytes: it sets `key` to
 * `value` when the key's value is `expected` (null: missing) and reports whether it did. A
 * multi-key put carries `{ keys, values }`: every key gets its value in one step (the model of an
 * atomic operation; `key` names the group for the checker). A registration carries
 * `{ idleTimeoutMs, maxSessions }`.
 *
 * @module
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Expired sessions a registration removes at most besides what the bound requires (as
 * storage/kv_core.ts). */
export const EXPIRED_PER_REGISTER = 16;

/** A client session reference carried by a command. */
export interface SimSession {
  /** The session id: the log index of its registration (0 is invalid). */
  id: number;
  /** The client's sequence number for this command (1, 2, ...). */
  seq: number;
}

/** A command. */
export interface KvCommand {
  /** What it does. */
  kind: "put" | "delete" | "cas" | "mput" | "register";
  /** The session (none: applied as it comes). */
  session?: SimSession;
  /** The proposer's clock reading (virtual ms); advances the state machine's clock. */
  time?: number;
  /** The key (empty for a registration). */
  key: string;
  /** The value (empty for delete; JSON for cas, mput and register). */
  value: string;
}

const KINDS = ["put", "delete", "cas", "mput", "register"] as const;
const HEADER = 20;

/** Encodes a command. */
export function encodeCommand(cmd: KvCommand): Uint8Array {
  const key = enc.encode(cmd.key);
  const value = enc.encode(cmd.value);
  const out = new Uint8Array(HEADER + key.length + value.length);
  const view = new DataView(out.buffer);
  out[0] = KINDS.indexOf(cmd.kind) + 1;
  out[1] = cmd.session ? 1 : 0;
  view.setUint32(2, cmd.session?.id ?? 0, true);
  view.setUint32(6, cmd.session?.seq ?? 0, true);
  view.setFloat64(10, cmd.time ?? 0, true);
  view.setUint16(18, key.length, true);
  out.set(key, HEADER);
  out.set(value, HEADER + key.length);
  return out;
}

/** The first byte of a batch entry (command kinds are 1 to 5). */
const BATCH = 0xbb;

/** Encodes commands (puts, deletes, compare-and-sets, multi-key puts: never a registration,
 * whose session id is its entry's index) as one batch entry, the driver's ProposalBatcher
 * format here: 0xbb, u16 count, then per command u32 length + bytes. */
export function encodeBatch(parts: Uint8Array[]): Uint8Array {
  let size = 3;
  for (const p of parts) size += 4 + p.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = BATCH;
  view.setUint16(1, parts.length, true);
  let at = 3;
  for (const p of parts) {
    view.setUint32(at, p.length, true);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** The commands of a batch entry; throws RangeError on malformed bytes. */
export function decodeBatch(data: Uint8Array): Uint8Array[] {
  if (data.length < 3 || data[0] !== BATCH) throw new RangeError("not a batch entry");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = view.getUint16(1, true);
  const parts: Uint8Array[] = [];
  let at = 3;
  for (let i = 0; i < n; i++) {
    if (at + 4 > data.length) throw new RangeError("batch entry truncated");
    const len = view.getUint32(at, true);
    if (at + 4 + len > data.length) throw new RangeError("batch command overruns its entry");
    parts.push(data.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== data.length) throw new RangeError("trailing bytes after a batch");
  return parts;
}

/** A registration command (`time`: the proposer's clock reading). */
export function registerCommand(
  idleTimeoutMs: number,
  maxSessions: number,
  time: number,
): Uint8Array {
  return encodeCommand({
    kind: "register",
    time,
    key: "",
    value: JSON.stringify({ idleTimeoutMs, maxSessions }),
  });
}

/** Decodes a command; throws RangeError on malformed bytes. */
export function decodeCommand(data: Uint8Array): KvCommand {
  if (data.length < HEADER || data[0] < 1 || data[0] > KINDS.length || data[1] > 1) {
    throw new RangeError(`malformed kv command of ${data.length} bytes`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const keyLen = view.getUint16(18, true);
  if (HEADER + keyLen > data.length) throw new RangeError("kv command key overruns its buffer");
  const cmd: KvCommand = {
    kind: KINDS[data[0] - 1],
    key: dec.decode(data.subarray(HEADER, HEADER + keyLen)),
    value: dec.decode(data.subarray(HEADER + keyLen)),
  };
  if (data[1] === 1) cmd.session = { id: view.getUint32(2, true), seq: view.getUint32(6, true) };
  const time = view.getFloat64(10, true);
  if (time > 0) cmd.time = time;
  return cmd;
}

/** Why a command was refused (as storage/kv_core.ts's errors). */
export type KvRefusal = "session_expired" | "session_seq" | "bad_session";

/** What applying one command did. */
export interface KvApplyResult {
  /** The command (null for no-ops). */
  cmd: KvCommand | null;
  /** False when the command was refused (nothing changed). */
  ok: boolean;
  /** Why it was refused. */
  error?: KvRefusal;
  /** True when the session had already applied this write (a retry answered from the table). */
  duplicate: boolean;
  /** For a compare-and-set: whether it set the key (a retry answers the first attempt's). */
  swapped?: boolean;
  /** For a registration: the new session's id. */
  sessionId?: number;
}

/** Deliberate bugs of every SimKv (set by a simulation run that shows the checker catches them;
 * runs are sequential, so a module-wide switch is enough). */
export const simKvBugs = {
  /** Compare-and-set ignores its expected value. */
  casIgnoresExpected: false,
  /** A multi-key put writes its first key at once and the others with the next command. */
  tornMultiPut: false,
  /** A write under an expired session is applied but answered `session_expired` (so its
   * client reports it not applied, or applies it again under a new session). */
  expiredStillApplies: false,
};

/** A session record. */
interface SessionRecord {
  lastSeq: number;
  /** The last applied command's key and value (a retry must match it). */
  body: string;
  /** The last applied command's result (a compare-and-set's swapped flag). */
  swapped: boolean | null;
  /** State machine clock of the last use. */
  lastActive: number;
  idleTimeoutMs: number;
}

/** An in-memory key-value map with client sessions. */
export class SimKv {
  /** The last applied log index. */
  applied = 0;
  /** The state machine's clock: the largest command timestamp applied. */
  clock = 0;
  #data = new Map<string, string>();
  /** Sessions, least recently used first (a use moves a session to the end). */
  #sessions = new Map<number, SessionRecord>();
  /** Writes a torn multi-key put left for the next command (bug injection only). */
  #deferred: [string, string][] = [];

  /** Sessions in the table. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Whether session `id` is in the table (expired or not). */
  hasSession(id: number): boolean {
    return this.#sessions.has(id);
  }

  /** Applies the entry at `index` (empty data = no-op or conf change), one command. */
  apply(index: number, data: Uint8Array): KvApplyResult {
    const r = this.applyEntry(index, data);
    if (Array.isArray(r)) throw new RangeError(`a batch entry at ${index} where one command was`);
    return r;
  }

  /** Applies the entry at `index`: one command, or a batch entry's commands in order (one
   * result each, as the real state machine answers a batch). */
  applyEntry(index: number, data: Uint8Array): KvApplyResult | KvApplyResult[] {
    if (index !== this.applied + 1) {
      throw new RangeError(`applying index ${index} after ${this.applied}`);
    }
    this.applied = index;
    for (const [k, v] of this.#deferred.splice(0)) this.#data.set(k, v);
    if (data.length === 0) return { cmd: null, ok: true, duplicate: false };
    if (data[0] === BATCH) {
      return decodeBatch(data).map((part) => this.#applyCommand(index, part, true));
    }
    return this.#applyCommand(index, data, false);
  }

  #applyCommand(index: number, data: Uint8Array, inBatch: boolean): KvApplyResult {
    const cmd = decodeCommand(data);
    if (cmd.time !== undefined && cmd.time > this.clock) this.clock = cmd.time;
    if (cmd.kind === "register") {
      // Never proposed so (its id would be shared): a harness bug.
      if (inBatch) throw new RangeError(`a registration inside the batch entry at ${index}`);
      return this.#register(index, cmd);
    }
    if (!cmd.session) return this.#execute(cmd);
    const { id, seq } = cmd.session;
    const refuse = (error: KvRefusal): KvApplyResult => ({
      cmd,
      ok: false,
      error,
      duplicate: false,
    });
    if (id === 0) return refuse("bad_session");
    const s = this.#sessions.get(id);
    if (!s) return refuse("session_expired");
    if (this.#expired(s)) {
      this.#sessions.delete(id);
      if (simKvBugs.expiredStillApplies) this.#execute(cmd);
      return refuse("session_expired");
    }
    const body = cmd.kind + "\0" + cmd.key + "\0" + cmd.value;
    if (seq <= s.lastSeq) {
      if (seq === s.lastSeq && body === s.body) {
        this.#touch(id, s);
        const r: KvApplyResult = { cmd, ok: true, duplicate: true };
        if (s.swapped !== null) r.swapped = s.swapped;
        return r;
      }
      return refuse("session_seq");
    }
    const result = this.#execute(cmd);
    s.lastSeq = seq;
    s.body = body;
    s.swapped = result.swapped ?? null;
    this.#touch(id, s);
    return result;
  }

  #expired(s: SessionRecord): boolean {
    return this.clock - s.lastActive > s.idleTimeoutMs;
  }

  #touch(id: number, s: SessionRecord): void {
    s.lastActive = this.clock;
    this.#sessions.delete(id);
    this.#sessions.set(id, s);
  }

  #register(index: number, cmd: KvCommand): KvApplyResult {
    const { idleTimeoutMs, maxSessions } = JSON.parse(cmd.value) as {
      idleTimeoutMs: number;
      maxSessions: number;
    };
    const max = Math.max(1, maxSessions);
    let expiredBudget = EXPIRED_PER_REGISTER;
    for (const [id, s] of this.#sessions) {
      if (this.#sessions.size < max && expiredBudget === 0) break;
      if (this.#sessions.size >= max) this.#sessions.delete(id);
      else if (this.#expired(s)) {
        this.#sessions.delete(id);
        expiredBudget--;
      } else break;
    }
    this.#sessions.set(index, {
      lastSeq: 0,
      body: "",
      swapped: null,
      lastActive: this.clock,
      idleTimeoutMs,
    });
    return { cmd, ok: true, duplicate: false, sessionId: index };
  }

  #execute(cmd: KvCommand): KvApplyResult {
    switch (cmd.kind) {
      case "put":
        this.#data.set(cmd.key, cmd.value);
        break;
      case "delete":
        this.#data.delete(cmd.key);
        break;
      case "cas": {
        const { expected, value } = JSON.parse(cmd.value) as {
          expected: string | null;
          value: string;
        };
        const swapped = simKvBugs.casIgnoresExpected ||
          (this.#data.get(cmd.key) ?? null) === expected;
        if (swapped) this.#data.set(cmd.key, value);
        return { cmd, ok: true, duplicate: false, swapped };
      }
      case "mput": {
        const { keys, values } = JSON.parse(cmd.value) as { keys: string[]; values: string[] };
        keys.forEach((k, i) => {
          if (simKvBugs.tornMultiPut && i > 0) this.#deferred.push([k, values[i]]);
          else this.#data.set(k, values[i]);
        });
        break;
      }
    }
    return { cmd, ok: true, duplicate: false };
  }

  /** Marks `index` applied without a command (conf-change entries). */
  skip(index: number): void {
    this.apply(index, new Uint8Array(0));
  }

  /** Reads a key (null when missing). */
  get(key: string): string | null {
    return this.#data.get(key) ?? null;
  }

  /** Serializes data and sessions (data sorted, sessions in their order of last use, so equal
   * states give equal bytes). */
  serialize(): Uint8Array {
    const data = [...this.#data.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const sessions = [...this.#sessions.entries()];
    const deferred = this.#deferred;
    return enc.encode(
      JSON.stringify({ applied: this.applied, clock: this.clock, data, sessions, deferred }),
    );
  }

  /** Replaces the state with a snapshot taken at `index` (empty bytes = initial state). */
  static restore(bytes: Uint8Array, index: number): SimKv {
    const kv = new SimKv();
    kv.applied = index;
    if (bytes.length === 0) return kv;
    const parsed = JSON.parse(dec.decode(bytes)) as {
      applied: number;
      clock: number;
      data: [string, string][];
      sessions: [number, SessionRecord][];
      deferred?: [string, string][];
    };
    if (parsed.applied !== index) {
      throw new RangeError(`snapshot data is at ${parsed.applied}, metadata says ${index}`);
    }
    kv.clock = parsed.clock;
    kv.#data = new Map(parsed.data);
    kv.#sessions = new Map(parsed.sessions);
    kv.#deferred = parsed.deferred ?? [];
    return kv;
  }

  /** A string that is equal for equal states. */
  fingerprint(): string {
    return dec.decode(this.serialize());
  }
}
