/**
 * gokv's Raft: a deterministic, I/O-free consensus core ({@link RawNode}, etcd-raft style) and
 * its driver ({@link RaftNode}) that runs it against a {@link LogStore}, a {@link Transport}
 * and a {@link StateMachine}.
 *
 * ```ts ignore
 * import { RaftNode } from "./mod.ts";
 * const node = await RaftNode.start({
 *   config: { id: 1, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true,
 *     maxSizePerMsg: 1 << 20, maxInflightMsgs: 256, maxInflightBytes: 0 },
 *   tickMs: 20, log, sm, transport, bootstrapVoters: [1, 2, 3], snapshotThreshold: 10_000,
 * });
 * const result = await node.propose(command);
 * await node.readIndex(); // then read the local state machine
 * ```
 *
 * @module
 */
export * from "./types.ts";
export type { InitialState, LogStore } from "./storage.ts";
export { CompactedError, UnavailableError } from "./storage.ts";
export type { MessageHandler, Transport } from "./transport.ts";
export type { ApplyCommand, StateMachine } from "./state_machine.ts";
export type { LogFields, Logger } from "./logger.ts";
export { nullLogger } from "./logger.ts";
export {
  ConfChangeApplyError,
  ConfChangeInProgressError,
  InvalidConfChangeError,
  NotLeaderError,
  ProposalDroppedError,
  StoppedError,
  TimeoutError,
} from "./errors.ts";
export { ConfChangeDecodeError, decodeConfChange, encodeConfChange } from "./confchange_codec.ts";
export { TRANSFER_CONTEXT } from "./raft.ts";
export type { RaftConfig, ReadState, Role } from "./raft.ts";
export { RawNode } from "./raw_node.ts";
export type { ProgressStatus, RaftStatus, Ready, SoftState } from "./raw_node.ts";
export type { Clock, TimerHandle } from "./clock.ts";
export { systemClock } from "./clock.ts";
export { RaftNode } from "./node.ts";
export type { NodeStatus, RaftNodeOptions, RequestOptions } from "./node.ts";
