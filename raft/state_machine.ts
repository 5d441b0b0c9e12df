/**
 * The interface the Raft driver needs from the replicated state machine. storage/ implements it
 * on top of memory, JSON files or the LSM engine.
 *
 * @module
 */

/** A committed command handed to the state machine. */
export interface ApplyCommand {
  /** The log index of the command. */
  index: number;
  /** The command bytes (see storage/command.ts); empty for no-ops and conf changes, which only
   * advance the applied index. */
  data: Uint8Array;
}

/** The replicated state machine. */
export interface StateMachine {
  /** The index of the last applied entry (durable or rebuilt after restart). */
  appliedIndex(): number;
  /** Applies committed commands in order; returns one result per command (implementation
   * defined, e.g. the previous value or an error marker). Need not be synced to disk: the Raft
   * log is the write-ahead log and is replayed from `appliedIndex()` after a crash. */
  apply(cmds: ApplyCommand[]): Promise<unknown[]>;
  /** Serializes the whole state (data and client sessions) as of `appliedIndex()`. */
  snapshot(): Promise<Uint8Array>;
  /** Replaces the whole state with a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): Promise<void>;
  /** Releases resources. */
  close(): Promise<void>;
}
