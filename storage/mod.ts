/**
 * gokv storage backends: the Raft {@link LogStore} and the {@link KvStateMachine}, chosen by the
 * `storage` setting:
 *
 * - `memory` — nothing persisted (tests, throwaway nodes);
 * - `simplefile` — human-readable JSON files, every write fsynced (correct before fast);
 * - `lsm` (default) — a CRC-checked, group-committed segment log as the only write-ahead log and
 *   the state machine in the LSM engine, written without a second sync.
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../raft/logger.ts";
import type { LogStore } from "../raft/storage.ts";
import type { LsmOptions } from "../lsm/mod.ts";
import type { KvStateMachine } from "./kv_state_machine.ts";
import { LsmStateMachine, type LsmStateMachineOptions } from "./lsm_sm.ts";
import { MemoryLogStore } from "./memory_log.ts";
import { MemoryStateMachine } from "./memory_sm.ts";
import { SegmentLogStore } from "./segment_log.ts";
import { SimpleFileLogStore } from "./simplefile_log.ts";
import { SimpleFileStateMachine } from "./simplefile_sm.ts";

export type { InitialState, LogStore } from "../raft/storage.ts";
export type { ApplyCommand, StateMachine } from "../raft/state_machine.ts";
export type {
  ConfState,
  Entry,
  EntryType,
  HardState,
  MemberContext,
  NodeId,
  Snapshot,
  SnapshotMeta,
} from "../raft/types.ts";
export type { LogFields, Logger } from "../raft/logger.ts";
export type { LsmOptions } from "../lsm/mod.ts";
export * from "./command.ts";
export * from "./errors.ts";
export * from "./kv_state_machine.ts";
export * from "./kv_model.ts";
export { MemoryLogStore } from "./memory_log.ts";
export { MemoryStateMachine } from "./memory_sm.ts";
export { SimpleFileLogStore } from "./simplefile_log.ts";
export { SimpleFileStateMachine } from "./simplefile_sm.ts";
export { type SegmentLogOptions, SegmentLogStore } from "./segment_log.ts";
export { LsmStateMachine, type LsmStateMachineOptions } from "./lsm_sm.ts";
export { readSnapshot, type SnapshotContent, SnapshotWriter } from "./sm_snapshot.ts";

/** The storage backend kinds. */
export type StorageKind = "memory" | "simplefile" | "lsm";

/** The backend kinds, for validation. */
export const STORAGE_KINDS: readonly StorageKind[] = ["memory", "simplefile", "lsm"];

/** Options of {@link openStorage}. */
export interface OpenStorageOptions {
  /** LSM engine options (lsm backend). */
  lsm?: LsmOptions;
  /** Segment size of the lsm backend's Raft log (default 64 MiB). */
  segmentBytes?: number;
  /** Where to report repairs (torn log tails). */
  logger?: Logger;
  /** The lsm backend reports its flushes and compactions here (metrics). */
  onBackgroundWork?: LsmStateMachineOptions["onBackgroundWork"];
  /** The lsm backend reports here that its engine failed for good (the node must halt). */
  onFailure?: LsmStateMachineOptions["onFailure"];
}

/** An opened backend. */
export interface OpenedStorage {
  /** The Raft log. */
  log: LogStore;
  /** The state machine. */
  sm: KvStateMachine;
}

/**
 * Opens a backend in `dir` (the server passes `<data_dir>/node-<id>`; ignored for `memory`).
 * Layout: simplefile keeps `raft-*.json(l)` and `sm-state.json` in `dir`; lsm keeps the segment
 * log in `dir/wal/` and the LSM in `dir/sm/`.
 */
export async function openStorage(
  kind: StorageKind,
  dir: string,
  opts: OpenStorageOptions = {},
): Promise<OpenedStorage> {
  switch (kind) {
    case "memory":
      return { log: new MemoryLogStore(), sm: new MemoryStateMachine() };
    case "simplefile": {
      const log = await SimpleFileLogStore.open(dir);
      try {
        return { log, sm: await SimpleFileStateMachine.open(dir) };
      } catch (e) {
        await log.close();
        throw e;
      }
    }
    case "lsm": {
      const log = await SegmentLogStore.open(join(dir, "wal"), {
        segmentBytes: opts.segmentBytes,
        logger: opts.logger,
      });
      try {
        return {
          log,
          sm: await LsmStateMachine.open(join(dir, "sm"), {
            lsm: opts.lsm,
            onBackgroundWork: opts.onBackgroundWork,
            onFailure: opts.onFailure,
          }),
        };
      } catch (e) {
        await log.close();
        throw e;
      }
    }
    default:
      throw new RangeError(`unknown storage kind: ${kind as string}`);
  }
}
