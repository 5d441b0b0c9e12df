/**
 * The KV command codec: the bytes carried in Raft entries and applied by the state machines.
 *
 * Wire format (binary, little-endian):
 *
 * ```
 * u8 op        1 = Put, 2 = Delete, 3 = RegisterSession, 4 = Atomic, 5 = ExpirySweep,
 *              6 = SetClusterId, 7 = Batch
 * u8 flags     bit 0: a client session follows; bit 1: a leader timestamp follows
 * [session]    u64 clientId, uvarint seq            (when flags & 1)
 * [time]       u64 milliseconds since the epoch     (when flags & 2)
 * body         (the rest, by op)
 *   Put:             uvarint key length + key, uvarint value length + value
 *   Delete:          uvarint key length + key
 *   RegisterSession: uvarint idle timeout (ms), uvarint table bound (sessions)
 *   Atomic:          uvarint check count, then per check: key, u8 has versionstamp, [10 bytes];
 *                    uvarint mutation count, then per mutation: u8 type (datapath.proto
 *                    MutationType: 1 set, 2 delete, 3 sum, 4 max, 5 min, 9 set with a suffix-
 *                    versionstamped key), key, and by type:
 *                      set / 9:  u8 encoding, value, u8 has expiry, [u64 expireAt ms]
 *                      sum:      8-byte operand, u8 flags (1 min, 2 max, 4 clamp), [8 min], [8 max]
 *                    131 (V8 sum, type byte 0x83: added later, type 3 decodes as before):
 *                                uvarint length + V8 operand, u8 flags (as sum), [min], [max]
 *                                (each uvarint length + V8 bytes)
 *                      min, max: 8-byte operand
 *   ExpirySweep:     uvarint most keys to delete (the time field is required)
 *   Batch:           (flags 0) uvarint count (2 or more), then per command: uvarint length +
 *                    an encoded Put, Delete or Atomic; command j of the batch in the entry at
 *                    index i has versionstamp (i, j) and its own session (encodeBatch)
 * ```
 *
 * Nothing may follow the last field. The timestamp is the proposing node's clock reading when it
 * proposed the command: the state machine's clock is the largest timestamp applied so far (it never
 * reads a clock of its own), so every replica expires sessions at the same log position. The
 * session rules are in kv_core.ts; {@link commandBodyHash} identifies a command independently of
 * its session and timestamp (a retry with the same seq must carry the same body).
 *
 * @module
 */
import { putVarint, varintLength } from "../lsm/bytes.ts";
import { ByteReader, ByteWriter, Slab } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import { DecodeError } from "./errors.ts";
import { commandSizeProblem } from "../config/limits.ts";
import {
  type AtomicCheck,
  type AtomicMutation,
  isValueEncoding,
  ValueEncoding,
  VERSIONSTAMP_BYTES,
  VERSIONSTAMP_SUFFIX_BYTES,
} from "./kv_model.ts";

/** Command opcodes. */
export enum CommandOp {
  /** Set a key to a value. */
  Put = 1,
  /** Remove a key. */
  Delete = 2,
  /** Open a client session; its id is the log index of this command. */
  RegisterSession = 3,
  /** Checks and mutations applied all or nothing (kv_model.ts). */
  Atomic = 4,
  /** Deletes keys whose expiry time is at or before the command's time. */
  ExpirySweep = 5,
  /** Sets the cluster id unless the state machine has one (the first one applied wins). */
  SetClusterId = 6,
  /** Many commands in one entry ({@link encodeBatch}); not a {@link Command} of its own. */
  Batch = 7,
}

/** Identifies a client command for exactly-once application. */
export interface ClientSession {
  /** The session id: the log index of the session's registration (never 0). */
  clientId: bigint;
  /** The client's sequence number for this command, increasing from 1. */
  seq: number;
}

/** Fields every command may carry. */
interface CommandBase {
  /** The client session, for exactly-once application. */
  session?: ClientSession;
  /** The proposer's clock reading (ms since the epoch); advances the state machine's clock. */
  time?: number;
}

/** Sets `key` to `value`. */
export interface PutCommand extends CommandBase {
  /** The opcode. */
  op: CommandOp.Put;
  /** The key (may be empty). */
  key: Uint8Array;
  /** The value. */
  value: Uint8Array;
}

/** Removes `key`. */
export interface DeleteCommand extends CommandBase {
  /** The opcode. */
  op: CommandOp.Delete;
  /** The key. */
  key: Uint8Array;
}

/** Opens a client session (the Raft thesis §6.3). */
export interface RegisterSessionCommand extends CommandBase {
  /** The opcode. */
  op: CommandOp.RegisterSession;
  /** The session expires after this many milliseconds (of the state machine's clock) unused. */
  idleTimeoutMs: number;
  /** Bound of the session table: registering evicts the least recently used sessions above it. */
  maxSessions: number;
}

/** An atomic operation (see kv_model.ts). */
export interface AtomicCommand extends CommandBase {
  /** The opcode. */
  op: CommandOp.Atomic;
  /** Checks, evaluated first. */
  checks: AtomicCheck[];
  /** Mutations, applied in order when every check passes. */
  mutations: AtomicMutation[];
}

/** An expiry sweep, proposed by the leader with its clock reading as `time`. */
export interface ExpirySweepCommand extends CommandBase {
  /** The opcode. */
  op: CommandOp.ExpirySweep;
  /** Most expired keys this sweep deletes. */
  maxKeys: number;
}

/** Sets the cluster id if the state machine has none (kv_core.ts: the first one applied wins). */
export interface SetClusterIdCommand extends CommandBase {
  /** The opcode. */
  op: CommandOp.SetClusterId;
  /** A lowercase UUID ({@link CLUSTER_ID_PATTERN}). */
  id: string;
}

/** A KV command. */
export type Command =
  | PutCommand
  | DeleteCommand
  | RegisterSessionCommand
  | AtomicCommand
  | ExpirySweepCommand
  | SetClusterIdCommand;

/** The form of a cluster id: a lowercase UUID (what `crypto.randomUUID()` returns). */
export const CLUSTER_ID_PATTERN: RegExp =
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Mutation type numbers on the wire (datapath.proto `MutationType`). */
const MUTATION_TYPES = {
  set: 1,
  delete: 2,
  sum: 3,
  max: 4,
  min: 5,
  setSuffixVersionstampedKey: 9,
} as const;
/** The type byte of a sum of V8 numbers / bigints (not a datapath.proto number: a gokv one). */
const V8_SUM_TYPE = 0x83;
const MUTATION_NAMES = new Map<number, AtomicMutation["type"]>(
  Object.entries(MUTATION_TYPES).map(([k, v]) => [v, k as AtomicMutation["type"]]),
);

const FLAG_SESSION = 1;
const FLAG_TIME = 2;

/** The largest key and value a command may carry: the limits of config/limits.ts (the service
 * refuses larger ones before they are proposed). */
export { MAX_KEY_BYTES, MAX_VALUE_BYTES } from "../config/limits.ts";

/** Why a command cannot be applied, or undefined when its sizes are within the limits. */
export function commandSizeError(cmd: Command): string | undefined {
  if (
    cmd.op === CommandOp.RegisterSession || cmd.op === CommandOp.ExpirySweep ||
    cmd.op === CommandOp.SetClusterId
  ) return undefined;
  if (cmd.op === CommandOp.Atomic) {
    for (const c of cmd.checks) {
      const p = commandSizeProblem(c.key);
      if (p) return p;
    }
    for (const m of cmd.mutations) {
      const key = m.type === "setSuffixVersionstampedKey"
        ? new Uint8Array(m.key.length + VERSIONSTAMP_SUFFIX_BYTES)
        : m.key;
      const p = commandSizeProblem(key, m.type === "delete" ? undefined : m.value);
      if (p) return p;
    }
    return undefined;
  }
  return commandSizeProblem(cmd.key, cmd.op === CommandOp.Put ? cmd.value : undefined);
}

function withBase<T extends Command>(cmd: T, session?: ClientSession, time?: number): T {
  if (session) cmd.session = session;
  if (time !== undefined) cmd.time = time;
  return cmd;
}

/** Builds a put command. */
export function putCommand(
  key: Uint8Array,
  value: Uint8Array,
  session?: ClientSession,
  time?: number,
): PutCommand {
  return withBase({ op: CommandOp.Put, key, value }, session, time);
}

/** Builds a delete command. */
export function deleteCommand(
  key: Uint8Array,
  session?: ClientSession,
  time?: number,
): DeleteCommand {
  return withBase({ op: CommandOp.Delete, key }, session, time);
}

/** Builds a session registration (`time` is the proposer's clock reading). */
export function registerSessionCommand(
  idleTimeoutMs: number,
  maxSessions: number,
  time: number,
): RegisterSessionCommand {
  return { op: CommandOp.RegisterSession, idleTimeoutMs, maxSessions, time };
}

/** Builds an atomic operation command. */
export function atomicCommand(
  checks: AtomicCheck[],
  mutations: AtomicMutation[],
  session?: ClientSession,
  time?: number,
): AtomicCommand {
  return withBase({ op: CommandOp.Atomic, checks, mutations }, session, time);
}

/** Builds the command that sets the cluster id unless one is set (RangeError: not a UUID). */
export function setClusterIdCommand(id: string): SetClusterIdCommand {
  if (!CLUSTER_ID_PATTERN.test(id)) throw new RangeError(`a cluster id is a UUID, not "${id}"`);
  return { op: CommandOp.SetClusterId, id };
}

/** Builds an expiry sweep carrying the proposer's clock reading. */
export function expirySweepCommand(maxKeys: number, time: number): ExpirySweepCommand {
  return { op: CommandOp.ExpirySweep, maxKeys, time };
}

function atomicSize(cmd: AtomicCommand): number {
  let n = 8;
  for (const c of cmd.checks) n += c.key.length + 16;
  for (const m of cmd.mutations) {
    n += m.key.length + 40 + (m.type === "delete" ? 0 : m.value.length);
    if (m.type === "sum") n += (m.min?.length ?? 0) + (m.max?.length ?? 0) + 10;
  }
  return n;
}

function encodeAtomic(w: ByteWriter, cmd: AtomicCommand): void {
  w.uvarint(cmd.checks.length);
  for (const c of cmd.checks) {
    w.bytes(c.key);
    if (c.versionstamp) {
      if (c.versionstamp.length !== VERSIONSTAMP_BYTES) {
        throw new RangeError(`a versionstamp has ${VERSIONSTAMP_BYTES} bytes`);
      }
      w.u8(1);
      w.raw(c.versionstamp);
    } else {
      w.u8(0);
    }
  }
  w.uvarint(cmd.mutations.length);
  for (const m of cmd.mutations) {
    const v8Sum = m.type === "sum" && m.encoding === ValueEncoding.V8;
    w.u8(v8Sum ? V8_SUM_TYPE : MUTATION_TYPES[m.type]);
    w.bytes(m.key);
    if (v8Sum) {
      w.bytes(m.value);
      w.u8((m.min ? 1 : 0) | (m.max ? 2 : 0) | (m.clamp ? 4 : 0));
      if (m.min) w.bytes(m.min);
      if (m.max) w.bytes(m.max);
      continue;
    }
    switch (m.type) {
      case "set":
      case "setSuffixVersionstampedKey":
        w.u8(m.encoding);
        w.bytes(m.value);
        if (m.expireAt !== undefined && m.expireAt > 0) {
          checkUint("expireAt", m.expireAt);
          w.u8(1);
          w.u64(m.expireAt);
        } else {
          w.u8(0);
        }
        break;
      case "delete":
        break;
      case "sum":
        checkU64(m.value);
        w.raw(m.value);
        w.u8((m.min ? 1 : 0) | (m.max ? 2 : 0) | (m.clamp ? 4 : 0));
        if (m.min) w.raw(checkU64(m.min));
        if (m.max) w.raw(checkU64(m.max));
        break;
      case "min":
      case "max":
        w.raw(checkU64(m.value));
        break;
    }
  }
}

/** Encodes the checks and mutations of an atomic operation alone (the Atomic command's body;
 * the client protocol carries the same bytes). */
export function encodeAtomicBody(checks: AtomicCheck[], mutations: AtomicMutation[]): Uint8Array {
  const cmd = atomicCommand(checks, mutations);
  const w = new ByteWriter(atomicSize(cmd));
  encodeAtomic(w, cmd);
  return w.finish();
}

/** Decodes {@link encodeAtomicBody}'s bytes; throws {@link DecodeError} on malformed ones. */
export function decodeAtomicBody(
  data: Uint8Array,
): { checks: AtomicCheck[]; mutations: AtomicMutation[] } {
  const r = new ByteReader(data, "atomic operation");
  // The caller (the client protocol's request decoder) hands over a private copy.
  const out = decodeAtomic(r, true);
  if (r.remaining !== 0) {
    throw new DecodeError("atomic operation", `${r.remaining} trailing bytes`);
  }
  return out;
}

function checkU64(b: Uint8Array): Uint8Array {
  if (b.length !== 8) throw new RangeError(`a u64 operand has 8 bytes, not ${b.length}`);
  return b;
}

/** Decodes checks and mutations; their byte strings are views of the reader's bytes when
 * `views` (a caller that keeps nothing beyond the life of those bytes), else copies. */
function decodeAtomic(
  r: ByteReader,
  views: boolean,
): { checks: AtomicCheck[]; mutations: AtomicMutation[] } {
  const bytes = views ? () => r.view() : () => r.bytes();
  const fixed = views ? (n: number) => r.raw(n) : (n: number) => r.raw(n).slice();
  const checks: AtomicCheck[] = [];
  const nc = r.uvarint();
  for (let i = 0; i < nc; i++) {
    const key = bytes();
    const has = r.u8();
    if (has > 1) throw new DecodeError("command", `bad check flag ${has}`);
    checks.push({ key, versionstamp: has ? fixed(VERSIONSTAMP_BYTES) : null });
  }
  const mutations: AtomicMutation[] = [];
  const nm = r.uvarint();
  for (let i = 0; i < nm; i++) {
    const t = r.u8();
    if (t === V8_SUM_TYPE) {
      const key = bytes();
      const value = bytes();
      const flags = r.u8();
      if (flags & ~7) throw new DecodeError("command", `bad sum flags ${flags}`);
      const m: Extract<AtomicMutation, { type: "sum" }> = {
        type: "sum",
        key,
        value,
        encoding: ValueEncoding.V8,
      };
      if (flags & 1) m.min = bytes();
      if (flags & 2) m.max = bytes();
      if (flags & 4) m.clamp = true;
      mutations.push(m);
      continue;
    }
    const type = MUTATION_NAMES.get(t);
    if (!type) throw new DecodeError("command", `unknown mutation type ${t}`);
    const key = bytes();
    if (type === "set" || type === "setSuffixVersionstampedKey") {
      const encoding = r.u8();
      if (!isValueEncoding(encoding)) {
        throw new DecodeError("command", `unknown value encoding ${encoding}`);
      }
      const value = bytes();
      const has = r.u8();
      if (has > 1) throw new DecodeError("command", `bad expiry flag ${has}`);
      mutations.push(
        has ? { type, key, value, encoding, expireAt: r.u64() } : {
          type,
          key,
          value,
          encoding,
        },
      );
    } else if (type === "delete") {
      mutations.push({ type, key });
    } else if (type === "sum") {
      const value = fixed(8);
      const flags = r.u8();
      if (flags & ~7) throw new DecodeError("command", `bad sum flags ${flags}`);
      const m: Extract<AtomicMutation, { type: "sum" }> = { type, key, value };
      if (flags & 1) m.min = fixed(8);
      if (flags & 2) m.max = fixed(8);
      if (flags & 4) m.clamp = true;
      mutations.push(m);
    } else {
      mutations.push({ type, key, value: fixed(8) });
    }
  }
  return { checks, mutations };
}

function checkUint(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${name} must be a non-negative safe integer: ${v}`);
  }
}

/** The encoded commands of this process: their bytes live as long as the Raft log keeps the
 * entries, which it drops in log order, so neighbours in a chunk die together. */
const COMMANDS = new Slab(64 * 1024, 4096);

function putU64(out: Uint8Array, at: number, v: number): void {
  let lo = v % 0x1_0000_0000;
  let hi = Math.floor(v / 0x1_0000_0000);
  for (let i = 0; i < 4; i++, lo = Math.floor(lo / 256)) out[at + i] = lo & 0xff;
  for (let i = 4; i < 8; i++, hi = Math.floor(hi / 256)) out[at + i] = hi & 0xff;
}

function putBytes(out: Uint8Array, at: number, b: Uint8Array): number {
  at = putVarint(out, at, b.length);
  if (b.length > 32) out.set(b, at);
  else for (let i = 0; i < b.length; i++) out[at + i] = b[i];
  return at + b.length;
}

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** A Put or a Delete (nearly every command) in one exact-size view of {@link COMMANDS}: the
 * bytes {@link encodeGeneric} writes. */
function encodePlain(cmd: PutCommand | DeleteCommand): Uint8Array {
  const s = cmd.session;
  if (s) checkUint("session seq", s.seq);
  if (cmd.time !== undefined) checkUint("command time", cmd.time);
  const put = cmd.op === CommandOp.Put;
  const size = 2 + (s ? 8 + varintLength(s.seq) : 0) + (cmd.time !== undefined ? 8 : 0) +
    varintLength(cmd.key.length) + cmd.key.length +
    (put ? varintLength(cmd.value.length) + cmd.value.length : 0);
  const out = COMMANDS.alloc(size);
  out[0] = cmd.op;
  out[1] = (s ? FLAG_SESSION : 0) | (cmd.time !== undefined ? FLAG_TIME : 0);
  let at = 2;
  if (s) {
    const id = s.clientId;
    if (id >= 0n && id <= MAX_SAFE_BIG) putU64(out, at, Number(id));
    else {
      new DataView(out.buffer, out.byteOffset, out.byteLength).setBigUint64(
        at,
        BigInt.asUintN(64, id),
        true,
      );
    }
    at = putVarint(out, at + 8, s.seq);
  }
  if (cmd.time !== undefined) {
    putU64(out, at, cmd.time);
    at += 8;
  }
  at = putBytes(out, at, cmd.key);
  if (put) putBytes(out, at, cmd.value);
  return out;
}

/** Encodes a command. */
export function encodeCommand(cmd: Command): Uint8Array {
  if (cmd.op === CommandOp.Put || cmd.op === CommandOp.Delete) return encodePlain(cmd);
  return encodeGeneric(cmd);
}

/** Encodes any command through a {@link ByteWriter}. */
function encodeGeneric(cmd: Command): Uint8Array {
  const size = 2 + 18 + 8 + 20 +
    (cmd.op === CommandOp.Put || cmd.op === CommandOp.Delete ? cmd.key.length : 0) +
    (cmd.op === CommandOp.Put ? cmd.value.length : 0) +
    (cmd.op === CommandOp.Atomic ? atomicSize(cmd) : 0);
  const w = new ByteWriter(size);
  w.u8(cmd.op);
  w.u8((cmd.session ? FLAG_SESSION : 0) | (cmd.time !== undefined ? FLAG_TIME : 0));
  if (cmd.session) {
    checkUint("session seq", cmd.session.seq);
    w.big64(cmd.session.clientId);
    w.uvarint(cmd.session.seq);
  }
  if (cmd.time !== undefined) {
    checkUint("command time", cmd.time);
    w.u64(cmd.time);
  }
  switch (cmd.op) {
    case CommandOp.Put:
      w.bytes(cmd.key);
      w.bytes(cmd.value);
      break;
    case CommandOp.Delete:
      w.bytes(cmd.key);
      break;
    case CommandOp.RegisterSession:
      checkUint("idle timeout", cmd.idleTimeoutMs);
      checkUint("session bound", cmd.maxSessions);
      w.uvarint(cmd.idleTimeoutMs);
      w.uvarint(cmd.maxSessions);
      break;
    case CommandOp.Atomic:
      encodeAtomic(w, cmd);
      break;
    case CommandOp.ExpirySweep:
      if (cmd.time === undefined) throw new RangeError("an expiry sweep carries a time");
      checkUint("sweep bound", cmd.maxKeys);
      w.uvarint(cmd.maxKeys);
      break;
    case CommandOp.SetClusterId:
      w.bytes(new TextEncoder().encode(cmd.id));
      break;
  }
  return w.finish();
}

/** A decoded command and where its body starts in the encoded bytes; an atomic command's byte
 * strings are views of `data` when `views` (see {@link decodeAtomic}). */
function decode(data: Uint8Array, views = false): { cmd: Command; bodyStart: number } {
  const r = new ByteReader(data, "command");
  const op = r.u8();
  const flags = r.u8();
  if (flags & ~(FLAG_SESSION | FLAG_TIME)) {
    throw new DecodeError("command", `unknown flags ${flags}`);
  }
  let session: ClientSession | undefined;
  if (flags & FLAG_SESSION) session = { clientId: r.big64(), seq: r.uvarint() };
  const time = flags & FLAG_TIME ? r.u64() : undefined;
  const bodyStart = r.pos;
  let cmd: Command;
  if (op === CommandOp.Put) {
    const key = r.bytes();
    cmd = putCommand(key, r.bytes(), session, time);
  } else if (op === CommandOp.Delete) {
    cmd = deleteCommand(r.bytes(), session, time);
  } else if (op === CommandOp.RegisterSession) {
    const idle = r.uvarint();
    const max = r.uvarint();
    cmd = withBase({ op, idleTimeoutMs: idle, maxSessions: max }, session, time);
  } else if (op === CommandOp.Atomic) {
    const { checks, mutations } = decodeAtomic(r, views);
    cmd = atomicCommand(checks, mutations, session, time);
  } else if (op === CommandOp.ExpirySweep) {
    if (time === undefined) throw new DecodeError("command", "an expiry sweep without a time");
    cmd = withBase({ op, maxKeys: r.uvarint() }, session, time);
  } else if (op === CommandOp.SetClusterId) {
    const id = new TextDecoder().decode(r.bytes());
    if (!CLUSTER_ID_PATTERN.test(id)) throw new DecodeError("command", "a cluster id is a UUID");
    cmd = withBase({ op, id }, session, time);
  } else {
    throw new DecodeError("command", `unknown op ${op}`);
  }
  if (r.remaining !== 0) throw new DecodeError("command", `${r.remaining} trailing bytes`);
  return { cmd, bodyStart };
}

/** Decodes a command; throws {@link DecodeError} on malformed bytes. */
export function decodeCommand(data: Uint8Array): Command {
  return decode(data).cmd;
}

/**
 * Decodes a command and hashes what it does (op and body, not its session or timestamp): two
 * attempts of one client write hash alike, a different command under a reused seq almost surely
 * not. Throws {@link DecodeError} on malformed bytes.
 */
export function decodeCommandWithHash(data: Uint8Array): { cmd: Command; hash: number } {
  const put = decodePut(data);
  if (put) {
    return { cmd: put, hash: crc32c(data, crc32c(data, 0, 0, 1), putBodyStart, data.length) };
  }
  // The apply path keeps nothing of a command beyond its entry: views, as decodePut's.
  const { cmd, bodyStart } = decode(data, true);
  const hash = crc32c(data, crc32c(data, 0, 0, 1), bodyStart, data.length);
  return { cmd, hash };
}

/** Where the body of the command {@link decodePut} decoded last starts. */
let putBodyStart = 0;

/** Reads an unsigned LEB128 varint of at most 8 bytes (as {@link ByteReader.uvarint}) at `at`,
 * setting {@link varintEnd}; -1 when truncated or too long. */
function varintAt(data: Uint8Array, at: number): number {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 8 && at < data.length; i++) {
    const b = data[at++];
    v += (b & 0x7f) * mul;
    if (b < 0x80) {
      varintEnd = at;
      return v;
    }
    mul *= 0x80;
  }
  return -1;
}
let varintEnd = 0;

/** A u64 (little-endian) at `at` that is a safe integer, else -1. */
function safeU64At(data: Uint8Array, at: number): number {
  const lo = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
  const hi = (data[at + 4] | (data[at + 5] << 8) | (data[at + 6] << 16) | (data[at + 7] << 24)) >>>
    0;
  return hi > 0x1fffff ? -1 : hi * 0x1_0000_0000 + lo;
}

/**
 * The apply path's decoder of the command of nearly every entry, a well-formed Put: the same
 * command {@link decode} returns, read without a reader object, its key and value views of
 * `data` (not copies: the state machine copies what it keeps). Undefined for anything else,
 * malformed bytes included: {@link decode} then decodes or refuses them, with its messages.
 */
function decodePut(data: Uint8Array): PutCommand | undefined {
  const n = data.length;
  if (n < 4 || data[0] !== CommandOp.Put) return undefined;
  const flags = data[1];
  if (flags & ~(FLAG_SESSION | FLAG_TIME)) return undefined;
  let at = 2;
  let session: ClientSession | undefined;
  if (flags & FLAG_SESSION) {
    if (n - at < 9) return undefined;
    const id = safeU64At(data, at);
    const clientId = id >= 0 ? BigInt(id) : new DataView(
      data.buffer,
      data.byteOffset,
      data.byteLength,
    ).getBigUint64(at, true);
    const seq = varintAt(data, at + 8);
    if (seq < 0) return undefined;
    at = varintEnd;
    session = { clientId, seq };
  }
  let time: number | undefined;
  if (flags & FLAG_TIME) {
    if (n - at < 8) return undefined;
    time = safeU64At(data, at);
    if (time < 0) return undefined;
    at += 8;
  }
  const bodyStart = at;
  const keyLen = varintAt(data, at);
  if (keyLen < 0 || keyLen > n - varintEnd) return undefined;
  const keyAt = varintEnd;
  at = keyAt + keyLen;
  const valueLen = varintAt(data, at);
  if (valueLen < 0 || valueLen !== n - varintEnd) return undefined;
  const valueAt = varintEnd;
  putBodyStart = bodyStart;
  return putCommand(
    data.subarray(keyAt, keyAt + keyLen),
    data.subarray(valueAt, n),
    session,
    time,
  );
}

/** The ops a batch entry may carry: client writes, each under its own session. */
export function batchable(op: CommandOp): boolean {
  return op === CommandOp.Put || op === CommandOp.Delete || op === CommandOp.Atomic;
}

/**
 * Encodes encoded commands (two or more, each a Put, Delete or Atomic: {@link batchable}) as one
 * batch entry. The caller bounds the batch (config/limits.ts MAX_BATCH_ENTRY_BYTES and
 * MAX_BATCH_COMMANDS); the parts are copied once, into the entry.
 */
export function encodeBatch(parts: Uint8Array[]): Uint8Array {
  let size = 2 + varintLength(parts.length);
  for (const p of parts) size += varintLength(p.length) + p.length;
  const out = new Uint8Array(size);
  out[0] = CommandOp.Batch;
  out[1] = 0;
  let at = putVarint(out, 2, parts.length);
  for (const p of parts) {
    at = putVarint(out, at, p.length);
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** True when `data` is a batch entry ({@link encodeBatch}). */
export function isBatch(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === CommandOp.Batch;
}

/** The encoded commands of a batch entry (views of `data`, not decoded: each is refused or applied
 * on its own); throws {@link DecodeError} when the framing is malformed. */
export function decodeBatch(data: Uint8Array): Uint8Array[] {
  const r = new ByteReader(data, "batch");
  if (r.u8() !== CommandOp.Batch) throw new DecodeError("batch", "not a batch entry");
  if (r.u8() !== 0) throw new DecodeError("batch", "unknown flags");
  const n = r.uvarint();
  // A command's position in its entry is the u16 of its versionstamp.
  if (n < 2 || n > 0xffff) throw new DecodeError("batch", `a batch of ${n} commands`);
  if (n > r.remaining) throw new DecodeError("batch", `${n} commands in ${r.remaining} bytes`);
  const parts: Uint8Array[] = new Array(n);
  for (let i = 0; i < n; i++) parts[i] = r.raw(r.uvarint());
  if (r.remaining !== 0) throw new DecodeError("batch", `${r.remaining} trailing bytes`);
  return parts;
}

/** See {@link decodeCommandWithHash}: the hash of an encoded command. */
export function commandBodyHash(data: Uint8Array): number {
  return decodeCommandWithHash(data).hash;
}
