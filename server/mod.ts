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
