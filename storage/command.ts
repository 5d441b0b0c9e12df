/**
 * The KV command codec: the bytes carried in Raft entries and applied by the state machines.
 *
 * Wire format (binary, little-endian):
 *
 * ```
 * u8 op        1 = Put, 2 = Delete
 * u8 flags     bit 0: a client session follows
 * [session]    u64 clientId, uvarint seq            (when flags & 1)
 * key          uvarint length + bytes
 * [value]      uvarint length + bytes               (Put only)
 * ```
 *
 * Nothing may follow the last field. A client session makes the command exactly-once: the state
 * machine remembers, per `clientId`, the highest `seq` applied and its result, and answers a
 * command with `seq <= lastSeq` from that cache without changing anything.
 *
 * @module
 */
import { ByteReader, ByteWriter } from "./bytes.ts";
import { DecodeError } from "./errors.ts";
import { commandSizeProblem } from "../config/limits.ts";

/** Command opcodes. */
export enum CommandOp {
  /** Set a key to a value. */
  Put = 1,
  /** Remove a key. */
  Delete = 2,
}

/** Identifies a client command for exactly-once application. */
export interface ClientSession {
  /** The client's id: an unsigned 64-bit integer (random per client process). */
  clientId: bigint;
  /** The client's sequence number for this command, increasing from 1. */
  seq: number;
}

/** Sets `key` to `value`. */
export interface PutCommand {
  /** The opcode. */
  op: CommandOp.Put;
  /** The key (may be empty). */
  key: Uint8Array;
  /** The value. */
  value: Uint8Array;
  /** The client session, for exactly-once application. */
  session?: ClientSession;
}

/** Removes `key`. */
export interface DeleteCommand {
  /** The opcode. */
  op: CommandOp.Delete;
  /** The key. */
  key: Uint8Array;
  /** The client session, for exactly-once application. */
  session?: ClientSession;
}

/** A KV command. */
export type Command = PutCommand | DeleteCommand;

const FLAG_SESSION = 1;

/** The largest key and value a command may carry: the limits of config/limits.ts (the service
 * refuses larger ones before they are proposed). */
export { MAX_KEY_BYTES, MAX_VALUE_BYTES } from "../config/limits.ts";

/** Why a command cannot be applied, or undefined when its sizes are within the limits. */
export function commandSizeError(cmd: Command): string | undefined {
  return commandSizeProblem(cmd.key, cmd.op === CommandOp.Put ? cmd.value : undefined);
}

/** Builds a put command. */
export function putCommand(
  key: Uint8Array,
  value: Uint8Array,
  session?: ClientSession,
): PutCommand {
  return session ? { op: CommandOp.Put, key, value, session } : { op: CommandOp.Put, key, value };
}

/** Builds a delete command. */
export function deleteCommand(key: Uint8Array, session?: ClientSession): DeleteCommand {
  return session ? { op: CommandOp.Delete, key, session } : { op: CommandOp.Delete, key };
}

/** Encodes a command. */
export function encodeCommand(cmd: Command): Uint8Array {
  const size = 2 + 18 + 10 + cmd.key.length +
    (cmd.op === CommandOp.Put ? 10 + cmd.value.length : 0);
  const w = new ByteWriter(size);
  w.u8(cmd.op);
  w.u8(cmd.session ? FLAG_SESSION : 0);
  if (cmd.session) {
    if (!Number.isSafeInteger(cmd.session.seq) || cmd.session.seq < 0) {
      throw new RangeError(`session seq must be a non-negative safe integer: ${cmd.session.seq}`);
    }
    w.big64(cmd.session.clientId);
    w.uvarint(cmd.session.seq);
  }
  w.bytes(cmd.key);
  if (cmd.op === CommandOp.Put) w.bytes(cmd.value);
  return w.finish();
}

/** Decodes a command; throws {@link DecodeError} on malformed bytes. */
export function decodeCommand(data: Uint8Array): Command {
  const r = new ByteReader(data, "command");
  const op = r.u8();
  const flags = r.u8();
  if (flags & ~FLAG_SESSION) throw new DecodeError("command", `unknown flags ${flags}`);
  let session: ClientSession | undefined;
  if (flags & FLAG_SESSION) session = { clientId: r.big64(), seq: r.uvarint() };
  const key = r.bytes();
  let cmd: Command;
  if (op === CommandOp.Put) cmd = putCommand(key, r.bytes(), session);
  else if (op === CommandOp.Delete) cmd = deleteCommand(key, session);
  else throw new DecodeError("command", `unknown op ${op}`);
  if (r.remaining !== 0) throw new DecodeError("command", `${r.remaining} trailing bytes`);
  return cmd;
}
