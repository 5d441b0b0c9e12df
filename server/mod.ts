/**
 * The gokv server: {@link startServer} runs a node; {@link serverCommand} is `gokv server`.
 *
 * @module
 */
export {
  InsecureBindError,
  MemoryNodeRestartError,
  SERVER_VERSION,
  type ServerHandle,
  type ServerOptions,
  startServer,
  UnknownNodeError,
} from "./server.ts";
export { SERVER_USAGE, serverCommand } from "./cli.ts";
export { KvService, type RaftApi } from "./service.ts";
export { SlowReaderError, type WatchStream, type WatchStreams } from "./watch_stream.ts";
export {
  AuthGate,
  type AuthGateOptions,
  type AuthOp,
  authorize,
  hashToken,
  type KeyRange,
  type KeyScope,
  OPEN_PRINCIPAL,
  type Principal,
  type Role,
} from "./auth.ts";
export { createHttpHandler, type HttpOptions } from "./http.ts";
export {
  AddressBook,
  decodeMemberContext,
  encodeMemberContext,
  type MemberAddrs,
} from "./members.ts";
// The types the API above refers to.
export type { LogFields, Logger } from "../raft/logger.ts";
export type { HttpMetrics, NodeMetrics } from "./server_metrics.ts";
export type {
  Config,
  HttpSettings,
  KvConnectSettings,
  LogSettings,
  LsmSettings,
  NodeConfig,
  RaftSettings,
  SecuritySettings,
  SessionSettings,
  TlsBlock,
  TlsSettings,
} from "../config/config.ts";
export type { NodeLimits } from "../config/limits.ts";
export type {
  Consistency,
  GetManyResult,
  RaftStatusLike,
  RangeRequest,
  RangeResult,
  ScanPage,
  WriteSession,
} from "./service.ts";
export {
  type WatchEvent,
  WatchHub,
  type WatchInitial,
  type WatchPoll,
  type WatchSelector,
} from "./watch.ts";
export {
  type AtomicCheck,
  type AtomicMutation,
  type AtomicOperation,
  type AtomicResult,
  type KvEntry,
  ValueEncoding,
} from "../storage/kv_model.ts";
export type { ConfState, NodeId } from "../raft/types.ts";
export type { MemberInfo, ScanRange } from "../client/protocol.ts";
export { ByteBudget } from "../transport/listener.ts";
