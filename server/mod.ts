/**
 * The gokv server: {@link startServer} runs a node; {@link serverCommand} is `gokv server`.
 *
 * @module
 */
export {
  MemoryNodeRestartError,
  SERVER_VERSION,
  type ServerHandle,
  type ServerOptions,
  startServer,
  UnknownNodeError,
} from "./server.ts";
export { SERVER_USAGE, serverCommand } from "./cli.ts";
export { KvService, type RaftApi } from "./service.ts";
export { createHttpHandler, type HttpOptions } from "./http.ts";
export {
  AddressBook,
  decodeMemberContext,
  encodeMemberContext,
  type MemberAddrs,
} from "./members.ts";
