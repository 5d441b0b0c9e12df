/**
 * The gokv client library: {@link Client}, its typed errors and the wire protocol codec.
 *
 * @module
 */
export * from "./client.ts";
export * from "./errors.ts";
export { Consistency, type MemberInfo, Op, ProtocolError, Status } from "./protocol.ts";
export type { ClientTls } from "./connection.ts";
export type { Response as ProtocolResponse, WireWatchEvent } from "./protocol.ts";
export * from "../storage/kv_model.ts";
// The node limits AtomicLimits picks from.
export type { NodeLimits } from "../config/limits.ts";
export type {
  AtomicCheck as AtomicCheckSpec,
  AtomicMutation as AtomicMutationSpec,
  AtomicOperation as AtomicOperationSpec,
  KvEntry as VersionedEntry,
} from "../storage/kv_model.ts";
