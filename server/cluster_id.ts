/**
 * The cluster's id: a random UUID chosen once for the whole cluster and kept in the replicated
 * state, so that it is the same on every node, survives restarts and is in snapshots and
 * backups. It is the KV Connect database id (server/kv_connect.ts).
 *
 * Every node bootstraps with the same first log entry, so the id cannot be drawn there; it is
 * written at the first KV Connect metadata exchange instead (a follower hands that exchange to
 * the leader), under the reserved key {@link CLUSTER_ID_KEY}, with an atomic operation that checks
 * the key is absent: the first such write in the log wins, later ones fail their check and read
 * the winner's. A cluster that never serves KV Connect has no such key. The key starts with 0xff, above every key of the Deno KV key
 * encoding (client/kv_key.ts), so no Deno KV range ever returns it; KV Connect refuses writes to
 * keys from 0xff on. Through the binary protocol and the HTTP API it is an ordinary key: deleting
 * it gives the cluster a new id at the next leader election (Deno clients then must reopen).
 *
 * @module
 */
import { NotLeaderError, UnavailableError } from "../client/errors.ts";
import { ValueEncoding } from "../storage/kv_model.ts";
import type { KvService } from "./service.ts";

/** The reserved key of the cluster id: `0xff` then `gokv:cluster-id`. */
export const CLUSTER_ID_KEY: Uint8Array = new Uint8Array([
  0xff,
  ...new TextEncoder().encode("gokv:cluster-id"),
]);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Reads (and on the leader, creates) the cluster id; caches it once known. */
export class ClusterId {
  #id: string | undefined;
  #creating: Promise<string> | undefined;

  /** Creates the reader over the node's service. */
  constructor(private readonly service: KvService) {}

  async #read(consistency: "strong" | "eventual"): Promise<string | undefined> {
    const [e] = (await this.service.getMany([CLUSTER_ID_KEY], { consistency })).entries;
    if (!e) return undefined;
    const id = new TextDecoder().decode(e.value);
    if (!UUID.test(id)) throw new UnavailableError(`the cluster id record is corrupt: "${id}"`);
    return id;
  }

  /**
   * The cluster id. On a node that does not have it yet: the leader creates it; a follower
   * throws {@link NotLeaderError} (the HTTP front end forwards the request to the leader).
   */
  get(): Promise<string> {
    if (this.#id) return Promise.resolve(this.#id);
    return this.#creating ??= this.#get().finally(() => this.#creating = undefined);
  }

  async #get(): Promise<string> {
    const local = await this.#read("eventual");
    if (local) return this.#id = local;
    const known = await this.#read("strong");
    if (known) return this.#id = known;
    if (!this.service.isLeader()) {
      throw new NotLeaderError(this.service.leaderId(), this.service.leaderAddrs()?.client ?? "");
    }
    const id = crypto.randomUUID();
    const r = await this.service.atomic({
      checks: [{ key: CLUSTER_ID_KEY, versionstamp: null }],
      mutations: [{
        type: "set",
        key: CLUSTER_ID_KEY,
        value: new TextEncoder().encode(id),
        encoding: ValueEncoding.BYTES,
      }],
    });
    if (r.ok) return this.#id = id;
    const winner = await this.#read("strong");
    if (!winner) throw new UnavailableError("the cluster id is not readable yet");
    return this.#id = winner;
  }
}
