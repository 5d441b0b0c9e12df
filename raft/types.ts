/**
 * The Raft core's data types: entries, hard state, configuration, snapshots and messages.
 *
 * These types are the contract between the deterministic core (raft/), the storage backends
 * (storage/) that persist them and the transports (transport/) that carry them. They hold no
 * behaviour and import nothing.
 *
 * @module
 */

/** A node id. 0 means "none" (no vote, no leader). */
export type NodeId = number;

/** The id meaning "no node". */
export const NONE: NodeId = 0;

/** The kind of a log entry. */
export enum EntryType {
  /** An application command (opaque bytes for the state machine). Empty data is a leader's no-op. */
  Normal = 0,
  /** A membership change; `data` is an encoded {@link ConfChange}. */
  ConfChange = 1,
}

/** One entry of the replicated log. */
export interface Entry {
  /** The term of the leader that created the entry. */
  term: number;
  /** The position in the log, from 1. */
  index: number;
  /** What the data means. */
  type: EntryType;
  /** The payload. */
  data: Uint8Array;
}

/** The state that must be durable before any message depending on it is sent. */
export interface HardState {
  /** The latest term this node has seen. */
  term: number;
  /** The candidate voted for in `term`, or {@link NONE}. */
  vote: NodeId;
  /** The highest log index known to be committed. */
  commit: number;
}

/**
 * A cluster membership configuration. Outside a joint consensus `votersOutgoing` is empty.
 * During C(old,new), `voters` holds C(new) and `votersOutgoing` holds C(old).
 */
export interface ConfState {
  /** Voters of the (incoming) configuration. */
  voters: NodeId[];
  /** Voters of the outgoing configuration while joint; empty otherwise. */
  votersOutgoing: NodeId[];
  /** Non-voting members that receive the log. */
  learners: NodeId[];
  /** Learners that will become voters when the joint configuration is left. */
  learnersNext: NodeId[];
}

/** The kind of a single membership change. */
export enum ConfChangeType {
  /** Add (or promote to) a voter. */
  AddNode = 0,
  /** Remove a node. */
  RemoveNode = 1,
  /** Add a learner (or demote a voter to a learner). */
  AddLearner = 2,
}

/** One membership change. */
export interface ConfChangeSingle {
  /** What to do. */
  type: ConfChangeType;
  /** The node it applies to. */
  nodeId: NodeId;
}

/**
 * A membership change carried in a {@link EntryType.ConfChange} entry. A non-empty `changes`
 * enters a joint configuration C(old,new); an empty `changes` leaves it (C(new)).
 * `context` carries application data (e.g. the new node's addresses).
 */
export interface ConfChange {
  /** The changes; empty means "leave the joint configuration". */
  changes: ConfChangeSingle[];
  /** Opaque application context (addresses of added nodes, for instance). */
  context: Uint8Array;
}

/**
 * The context of the conf change that last added (or promoted) a member of the configuration:
 * application bytes opaque to Raft (gokv's server stores the member's addresses there).
 */
export interface MemberContext {
  /** The member. */
  id: NodeId;
  /** The non-empty {@link ConfChange.context} of the change that added it. */
  context: Uint8Array;
}

/** What describes a snapshot: the last index and term it covers and the configuration then. */
export interface SnapshotMeta {
  /** The last log index the snapshot includes. */
  index: number;
  /** The term of that entry. */
  term: number;
  /** The membership configuration as of `index`. */
  conf: ConfState;
  /**
   * The contexts of the conf changes that added the members of `conf` (only members whose
   * change carried one; sorted by id). A node that installs the snapshot never sees those
   * entries, so this is how it learns what they carried. Absent in metadata written before it
   * existed (read as none).
   */
  memberContexts?: MemberContext[];
}

/** A snapshot: metadata plus the state machine's serialized bytes (including client sessions). */
export interface Snapshot {
  /** What the snapshot covers. */
  meta: SnapshotMeta;
  /** The state machine's data. */
  data: Uint8Array;
}

/** The kinds of Raft messages. Local kinds never cross the network. */
export enum MessageType {
  /** Local: start an election (tick-driven or forced). */
  Hup = 0,
  /** Local: leader sends heartbeats. */
  Beat = 1,
  /** A proposal: local, or forwarded from a follower to the leader. */
  Prop = 2,
  /** AppendEntries. */
  App = 3,
  /** AppendEntries response. */
  AppResp = 4,
  /** RequestVote. */
  Vote = 5,
  /** RequestVote response. */
  VoteResp = 6,
  /** Pre-vote request (term is the term the sender would campaign at). */
  PreVote = 7,
  /** Pre-vote response. */
  PreVoteResp = 8,
  /** Heartbeat (carries commit and, for ReadIndex, a context). */
  Heartbeat = 9,
  /** Heartbeat response. */
  HeartbeatResp = 10,
  /** InstallSnapshot chunk (see {@link Message.snapshot}). */
  Snap = 11,
  /** InstallSnapshot chunk acknowledgement (`index` = bytes received so far, `reject` on failure). */
  SnapResp = 12,
  /** ReadIndex request: local, or forwarded from a follower to the leader. */
  ReadIndex = 13,
  /** ReadIndex answer from the leader to a follower (`index` is the read index). */
  ReadIndexResp = 14,
  /** Leadership transfer: tells the target to campaign at once. */
  TimeoutNow = 15,
  /** Local or forwarded: ask the leader to transfer leadership to `from`. */
  TransferLeader = 16,
  /** Local: the transport reports `from` unreachable. */
  Unreachable = 17,
  /** Local: check quorum tick for the leader. */
  CheckQuorum = 18,
}

/** One chunk of an InstallSnapshot transfer. */
export interface SnapshotChunk {
  /** What the whole snapshot covers. */
  meta: SnapshotMeta;
  /** Byte offset of `data` within the snapshot's data. */
  offset: number;
  /** Total size of the snapshot's data in bytes. */
  total: number;
  /** The bytes at `offset`. */
  data: Uint8Array;
  /** True for the last chunk. */
  done: boolean;
}

/**
 * A Raft message. Every field is always present (fixed shape, cheap to encode); fields that a
 * kind does not use hold 0, false or empty values.
 */
export interface Message {
  /** The kind. */
  type: MessageType;
  /** Destination node. */
  to: NodeId;
  /** Sender node. */
  from: NodeId;
  /** The sender's term (0 for local messages). */
  term: number;
  /** App: term of the entry at `index`. Vote/PreVote: the candidate's last log term.
   * AppResp with reject: the conflict term hint. */
  logTerm: number;
  /** App: index preceding `entries`. Vote: the candidate's last index. AppResp: the match index
   * (or the rejected index). ReadIndexResp: the read index. SnapResp: bytes received. */
  index: number;
  /** App/Prop: the entries. */
  entries: Entry[];
  /** The sender's commit index (App, Heartbeat). */
  commit: number;
  /** Responses: true when refused. */
  reject: boolean;
  /** AppResp with reject: the conflict index hint. */
  rejectHint: number;
  /** ReadIndex / Heartbeat context; Vote: non-empty for a transfer-forced campaign. */
  context: Uint8Array;
  /** Snap: the chunk. */
  snapshot: SnapshotChunk | null;
}

const EMPTY = new Uint8Array(0);

/** Builds a message with every unspecified field set to its zero value. */
export function message(fields: Partial<Message> & Pick<Message, "type">): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: EMPTY,
    snapshot: null,
    ...fields,
  };
}

/** An empty configuration. */
export function emptyConfState(): ConfState {
  return { voters: [], votersOutgoing: [], learners: [], learnersNext: [] };
}
