/**
 * The KV command codec: the bytes carried in Raft entries and applied by the state machines.
 *
 * Wire format (binary, little-endian):
 *
 * ```
 * u8 op        1 = Put, 2 = Delete, 3 = RegisterSession
 * u8 flags     bit 0: a client session follows; bit 1: a leader timestamp follows
 * [session]    u64 clientId, uvarint seq            (when flags & 1)
 * [time]       u64 milliseconds since the epoch     (when flags & 2)
 * body         (the rest, by op)
 *   Put:             uvarint key length + key, uvarint value length + value
 *   Delete:          uvarint key length + key
 *   RegisterSession: uvarint idle timeout (ms), uvarint table bound (sessions)
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
import { ByteReader, ByteWriter } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";
import { DecodeError } from "./errors.ts";
import { commandSizeProblem } from "../config/limits.ts";

/** Command opcodes. */
export enum CommandOp {
  /** Set a key to a value. */
  Put = 1,
  /** Remove a key. */
  Delete = 2,
  /** Open a client session; its id is the log index of this command. */
  RegisterSession = 3,
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

/** A KV command. */
export type Command = PutCommand | DeleteCommand | RegisterSessionCommand;

const FLAG_SESSION = 1;
const FLAG_TIME = 2;

/** The largest key and value a command may carry: the limits of config/limits.ts (the service
 * refuses larger ones before they are proposed). */
export { MAX_KEY_BYTES, MAX_VALUE_BYTES } from "../config/limits.ts";

/** Why a command cannot be applied, or undefined when its sizes are within the limits. */
export function commandSizeError(cmd: Command): string | undefined {
  if (cmd.op === CommandOp.RegisterSession) return undefined;
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

function checkUint(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${name} must be a non-negative safe integer: ${v}`);
  }
}

/** Encodes a command. */
export function encodeCommand(cmd: Command): Uint8Array {
  const size = 2 + 18 + 8 + 20 +
    (cmd.op === CommandOp.RegisterSession ? 0 : cmd.key.length) +
    (cmd.op === CommandOp.Put ? cmd.value.length : 0);
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
  }
  return w.finish();
}

/** A decoded command and where its body starts in the encoded bytes. */
function decode(data: Uint8Array): { cmd: Command; bodyStart: number } {
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
  const { cmd, bodyStart } = decode(data);
  const hash = crc32c(data, crc32c(data, 0, 0, 1), bodyStart, data.length);
  return { cmd, hash };
}

/** See {@link decodeCommandWithHash}: the hash of an encoded command. */
export function commandBodyHash(data: Uint8Array): number {
  return decodeCommandWithHash(data).hash;
}
