/**
 * `gokv server --config FILE --id N [--join] [--log-level L] [--log-format F]`: runs one node
 * until SIGINT or SIGTERM, then shuts down gracefully (stops accepting, finishes in-flight
 * requests, persists) and returns exit code 0.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { asUsageError, EXIT_FAILED, EXIT_OK, UsageError } from "../config/cli.ts";
import { loadConfig } from "../config/config.ts";
import {
  InsecureBindError,
  type ServerTestHooks,
  startServerWithHooks,
  UnknownNodeError,
} from "./server.ts";

/** The server command's usage text. */
export const SERVER_USAGE = `Usage: gokv server --config FILE --id N [options]

Runs cluster node N of the config until SIGINT or SIGTERM (graceful shutdown, exit 0). A node
whose storage fails (or that cannot apply a committed configuration change) logs why and exits
with code 1, so that a supervisor restarts it from its durable state.

Options:
  -c, --config FILE      config file (default conf/config.yaml)
      --id N             this node's id (must be listed in the config's nodes)
      --join             join an existing cluster: never bootstrap from an empty data dir; wait
                         until the leader adds this node (\`gokv member add ...\`, then start it)
      --insecure         allow listening beyond loopback without TLS and tokens (by default such
                         a node refuses to start, exit code 2; README "Security")
      --log-level L      debug | info | warn | error (overrides log.level)
      --log-format F     text | json (overrides log.format)
  -h, --help             show this help

A node with an empty data directory that is started WITHOUT --join bootstraps a new cluster
whose voters are every node in the config; all initial nodes must use the same config.`;

/**
 * Runs the server command; resolves with the exit code once the node has stopped: 0 after a
 * signal, 1 when the node halted on a fatal error.
 */
export function serverCommand(argv: string[]): Promise<number> {
  return serverCommandWithHooks(argv, {});
}

/** {@link serverCommand} with fault-injection hooks (tests). */
export async function serverCommandWithHooks(
  argv: string[],
  hooks: ServerTestHooks,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        config: { type: "string", short: "c", default: "conf/config.yaml" },
        id: { type: "string" },
        join: { type: "boolean", default: false },
        insecure: { type: "boolean", default: false },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (e) {
    throw asUsageError(e);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(SERVER_USAGE);
    return EXIT_OK;
  }
  if (v.id === undefined) throw new UsageError("--id is required");
  const id = Number(v.id);
  if (!Number.isInteger(id) || id < 1) throw new UsageError(`--id must be a positive integer`);
  const level = v["log-level"];
  if (level !== undefined && !["debug", "info", "warn", "error"].includes(level)) {
    throw new UsageError(`--log-level must be debug, info, warn or error`);
  }
  const format = v["log-format"];
  if (format !== undefined && format !== "text" && format !== "json") {
    throw new UsageError(`--log-format must be text or json`);
  }
  const config = await loadConfig(v.config!);
  if (level) config.log.level = level as typeof config.log.level;
  if (format) config.log.format = format;
  let server;
  try {
    server = await startServerWithHooks(config, id, { join: v.join, insecure: v.insecure }, hooks);
  } catch (e) {
    if (e instanceof UnknownNodeError || e instanceof InsecureBindError) {
      throw new UsageError(e.message);
    }
    throw e;
  }
  const { promise, resolve } = Promise.withResolvers<void>();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const onSignal = () => resolve();
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const fatal = await Promise.race([promise.then(() => null), server.failed]);
  // Repeated signals during the graceful shutdown are ignored (the listeners stay installed).
  // After a fatal error close() persists nothing more (a failed fsync is never retried); it is
  // bounded so that the process exits even if a dying disk blocks it.
  const closed = server.close();
  if (fatal) {
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
  } else await closed;
  for (const s of signals) Deno.removeSignalListener(s, onSignal);
  if (fatal) {
    console.error(`gokv server: node ${id} halted: ${fatal.message}`);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}
