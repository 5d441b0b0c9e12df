/**
 * Embedding a gokv node in your own process (as etcd's `embed` package allows).
 *
 * @example
 * ```ts ignore
 * import { startNode } from "./embed.ts";
 * const node = await startNode({ config: "conf/config.yaml", id: 1 });
 * const kv = await node.client();
 * await kv.put("hello", "world");
 * await node.close();
 * ```
 *
 * @module
 */
import { type Config, configFromObject, loadConfig } from "../config/config.ts";
import type { Logger } from "../raft/logger.ts";
import { Client, type ClientOptions } from "../client/client.ts";
import { type ServerHandle, startServer } from "./server.ts";

/** What {@link startNode} needs. */
export interface StartNodeOptions {
  /** A config file path, a validated {@link Config}, or an object in the YAML file's shape. */
  config: string | Config | Record<string, unknown>;
  /** This node's id in the config. */
  id: number;
  /** Join an existing cluster instead of bootstrapping (a node added with `member add`). */
  join?: boolean;
  /** Where log lines go (default: stderr, at the config's level). */
  logger?: Logger;
  /** Listen beyond loopback without TLS and tokens (as `gokv server --insecure`); otherwise
   * such a node refuses to start (`InsecureBindError`, README "Security"). */
  insecure?: boolean;
}

/** A running embedded node. */
export interface NodeHandle {
  /** The node id. */
  readonly id: number;
  /** The validated configuration in use. */
  readonly config: Config;
  /** The underlying server. */
  readonly server: ServerHandle;
  /** A client connected to every node of the config; closed with the node. */
  client(opts?: Omit<ClientOptions, "endpoints">): Promise<Client>;
  /** The node's status (as `GET /v1/status`). */
  status(): Record<string, unknown>;
  /** Stops the node and every client it handed out. Idempotent. */
  close(): Promise<void>;
}

function isConfig(c: unknown): c is Config {
  const o = c as Config;
  return typeof o === "object" && o !== null && typeof o.dataDir === "string" &&
    Array.isArray(o.nodes) && typeof o.raft?.tickMs === "number";
}

/**
 * Starts node `id` in this process and returns a handle with `client()`, `status()` and
 * `close()`.
 */
export async function startNode(opts: StartNodeOptions): Promise<NodeHandle> {
  const config = typeof opts.config === "string"
    ? await loadConfig(opts.config)
    : isConfig(opts.config)
    ? opts.config
    : configFromObject(opts.config);
  const server = await startServer(config, opts.id, {
    join: opts.join,
    logger: opts.logger,
    insecure: opts.insecure,
  });
  const clients = new Set<Client>();
  let closing: Promise<void> | undefined;
  return {
    id: opts.id,
    config,
    server,
    async client(copts = {}) {
      const c = await Client.connect({ ...copts, endpoints: config.nodes.map((n) => n.client) });
      clients.add(c);
      return c;
    },
    status: () => server.status(),
    close() {
      closing ??= (async () => {
        for (const c of clients) await c.close();
        clients.clear();
        await server.close();
      })();
      return closing;
    },
  };
}
