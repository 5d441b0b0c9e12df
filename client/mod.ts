/**
 * The gokv client library: {@link Client}, its typed errors and the wire protocol codec.
 *
 * @module
 */
export * from "./client.ts";
export * from "./errors.ts";
export { Consistency, type MemberInfo, Op, ProtocolError, Status } from "./protocol.ts";
export type { Response as ProtocolResponse } from "./protocol.ts";
export type { ClientTls } from "./connection.ts";
