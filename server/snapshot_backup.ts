/**
 * `GET /v1/snapshot` on the leader: a consistent backup of the whole state, streamed as a
 * {@link encodeBackup backup file} while the node keeps serving.
 *
 * Consistency: a ReadIndex barrier first (the local state then holds every write acknowledged
 * before the request), then one state-machine view ({@link StateExport}) at its applied index;
 * the keys are read from that view as the client consumes the response, so neither the node nor
 * the client holds the state in memory. A follower answers 503 `not_leader` with the leader's
 * HTTP address (`leaderHttp`) instead of forwarding: the client asks the leader directly.
 *
 * @module
 */
import type { StateExport } from "../storage/kv_state_machine.ts";
import { encodeBackup } from "./backup_format.ts";
import type { Counter, Histogram } from "./metrics.ts";

/** What the handler needs from the node (server.ts wires it). */
export interface SnapshotBackupDeps {
  /** This node's id. */
  nodeId: number;
  /** The version written in the header. */
  version: string;
  /** True when this node leads. */
  isLeader(): boolean;
  /** The leader's id and HTTP address, when known. */
  leader(): { id: number; http?: string };
  /** Linearizable barrier: resolves when local state holds every write committed before. */
  readIndex(): Promise<void>;
  /** A consistent view of the state machine. */
  exportState(): Promise<StateExport>;
  /** The term of the log entry at `index` (see the header's `term`). */
  termAt(index: number): number;
  /**
   * Authorization hook: throw to refuse (server/auth.ts; the node requires the admin role, as a
   * backup reads every key). Without it every caller is allowed.
   */
  authorize?(req: Request): void | Promise<void>;
  /** Saves served and their duration (from the request to the last byte). */
  metrics?: { saves: Counter; seconds: Histogram };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** The response's content type. */
export const SNAPSHOT_CONTENT_TYPE = "application/vnd.gokv.snapshot";

/** Creates the `GET /v1/snapshot` handler. */
export function createSnapshotHandler(
  deps: SnapshotBackupDeps,
): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method !== "GET") {
      return json(405, { error: "method_not_allowed", message: `${req.method} /v1/snapshot` });
    }
    await deps.authorize?.(req);
    if (!deps.isLeader()) {
      const l = deps.leader();
      return json(503, {
        error: "not_leader",
        message: "snapshots are taken on the leader",
        leader: l.id,
        leaderHttp: l.http ?? "",
      });
    }
    const t0 = performance.now();
    await deps.readIndex();
    const state = await deps.exportState();
    let term: number;
    try {
      term = deps.termAt(state.appliedIndex);
    } catch (e) {
      state.release();
      throw e;
    }
    const body = encodeBackup({
      index: state.appliedIndex,
      term,
      createdAt: new Date().toISOString(),
      nodeId: deps.nodeId,
      gokvVersion: deps.version,
    }, state);
    const m = deps.metrics;
    const timed = m
      ? body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          flush() {
            m.saves.inc();
            m.seconds.observe((performance.now() - t0) / 1000);
          },
        }),
      )
      : body;
    return new Response(timed, {
      status: 200,
      headers: {
        "content-type": SNAPSHOT_CONTENT_TYPE,
        "x-gokv-snapshot-index": String(state.appliedIndex),
        "x-gokv-snapshot-term": String(term),
      },
    });
  };
}
