/**
 * The interface the Raft driver needs from a transport. transport/ implements it (tcp, grpc,
 * memory). Snapshots travel as a stream of {@link MessageType.Snap} chunks, so one interface
 * carries everything.
 *
 * @module
 */
import type { Message, NodeId } from "./types.ts";

/** Receives messages that arrived from peers. */
export type MessageHandler = (msg: Message) => void;

/** Carries Raft messages between nodes. */
export interface Transport {
  /** Starts listening and delivering incoming messages to `handler`. */
  start(handler: MessageHandler): Promise<void>;
  /** Queues messages for sending. Never throws and never blocks: messages to an unreachable
   * peer are dropped (Raft retries), and ordering is kept per peer. */
  send(msgs: Message[]): void;
  /** Adds or updates the address used to reach `id`. */
  addPeer(id: NodeId, address: string): void;
  /** Forgets `id` and closes its connection. */
  removePeer(id: NodeId): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}
