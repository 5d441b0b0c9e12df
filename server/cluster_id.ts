/**
 * The cluster's id: a random UUID chosen once for the whole cluster and kept in the replicated
 * state (storage/kv_core.ts, a state-machine record outside the user keys), so that it is the
 * same on every node, survives restarts and travels with snapshots and backups. It is the KV
 * Connect database id (server/kv_connect.ts) and `clusterId` in `/v1/status`.
 *
 * Every node bootstraps with the same first log entry, so the id cannot be drawn there: while
 * the state machine has none, the leader proposes a SetClusterId command with a random UUID
 * ({@link ClusterIdKeeper}); the first one applied wins on every replica, later ones change
 * nothing. A new cluster thus has its id a few milliseconds after its first election, whether
 * or not anyone uses KV Connect. Data written by an earlier version, which kept the id under the
 * user key `0xff "gokv:cluster-id"`, keeps its id: the first SetClusterId adopts that key.
 *
 * @module
 */
import { UnavailableError } from "../client/errors.ts";
import type { KvService } from "./service.ts";

/** How often the keeper looks whether the id is set (ms). */
const KEEPER_INTERVAL_MS = 50;

/** Proposes the cluster id while this node leads and its state machine has none. */
export class ClusterIdKeeper {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /** Creates the keeper over the node's service (call {@link start}). */
  constructor(private readonly service: KvService) {}

  /** Starts looking (every {@link KEEPER_INTERVAL_MS} ms, unref'd timers, until the id is set). */
  start(): void {
    if (this.#timer || this.#stopped) return;
    const tick = async () => {
      // Once set, the id never changes (the first SetClusterId applied wins): stop looking.
      if (this.service.clusterId() !== undefined) return;
      if (this.service.isLeader()) {
        // A failure (a leader change, a timeout) is retried at the next tick.
        await this.service.proposeClusterId(crypto.randomUUID()).catch(() => {});
      }
      if (this.#stopped) return;
      this.#timer = setTimeout(tick, KEEPER_INTERVAL_MS);
      Deno.unrefTimer(this.#timer);
    };
    this.#timer = setTimeout(tick, 0);
    Deno.unrefTimer(this.#timer);
  }

  /** Stops looking. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /**
   * The cluster id as this node's state machine has it; waits up to `waitMs` for it to apply
   * (a new cluster's first moments, a node replaying its log), then {@link UnavailableError}.
   */
  async get(waitMs = 5_000): Promise<string> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const id = this.service.clusterId();
      if (id !== undefined) return id;
      if (Date.now() >= deadline) {
        throw new UnavailableError("the cluster id is not known yet (no leader has set it)");
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
