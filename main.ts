/**
 * The `gokv` executable: runs a node (`gokv server`) and is the client CLI.
 *
 * Exit codes: 0 success, 1 a failed operation, 2 a usage or configuration error.
 *
 * @module
 */
import { asUsageError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from "./config/cli.ts";
import { ConfigError, describeConfig } from "./config/config.ts";

/** The program version. */
export const VERSION = "0.1.0";

interface Command {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

const client = (name: string) => async (argv: string[]): Promise<number> => {
  const { clientCommand } = await import("./client/cli.ts");
  return await clientCommand(name, argv);
};

const COMMANDS: Record<string, Command> = {
  server: {
    summary: "run a cluster node (gokv server --config FILE --id N)",
    run: async (argv) => {
      const { serverCommand } = await import("./server/cli.ts");
      return await serverCommand(argv);
    },
  },
  set: { summary: "set a key: gokv set <key> <value>", run: client("set") },
  get: { summary: "read a key: gokv get <key>", run: client("get") },
  delete: { summary: "delete a key: gokv delete <key>", run: client("delete") },
  cas: {
    summary: "compare-and-set: gokv cas <key> <expected-versionstamp|-> <value>",
    run: client("cas"),
  },
  txn: { summary: "an atomic operation from JSON: gokv txn [FILE|-]", run: client("txn") },
  watch: {
    summary: "print changes as they commit: gokv watch <key|--prefix P>",
    run: client("watch"),
  },
  scan: { summary: "list keys in order: gokv scan [--prefix P] [--limit N]", run: client("scan") },
  member: { summary: "membership: gokv member list|add|remove", run: client("member") },
  leader: { summary: "leadership: gokv leader transfer <id>", run: client("leader") },
  status: { summary: "a table of every node (--json for scripts)", run: client("status") },
  bench: { summary: "closed-loop load generator with latency percentiles", run: client("bench") },
  snapshot: {
    summary: "backups: gokv snapshot save|restore|status <file>",
    run: async (argv) => {
      const { snapshotCommand } = await import("./server/snapshot_cmd.ts");
      return await snapshotCommand(argv);
    },
  },
  token: {
    summary: "tokens file helpers: gokv token hash [TOKEN] | new --name N --role R",
    run: async (argv) => {
      const { tokenCommand } = await import("./server/token_cmd.ts");
      return await tokenCommand(argv);
    },
  },
  config: {
    summary: "print every configuration key with its default and environment variable",
    run: (argv) => {
      if (argv.includes("--help") || argv.includes("-h")) {
        console.log("Usage: gokv config\n\nPrints every configuration key, default and override.");
        return Promise.resolve(EXIT_OK);
      }
      if (argv.length > 0) throw new UsageError(`gokv config takes no arguments`);
      const rows = describeConfig();
      const w = Math.max(...rows.map((r) => r.key.length));
      const we = Math.max(...rows.map((r) => r.env.length));
      for (const r of rows) {
        console.log(`${r.key.padEnd(w)}  ${r.env.padEnd(we)}  ${r.default.padEnd(9)}  ${r.doc}`);
      }
      return Promise.resolve(EXIT_OK);
    },
  },
  version: {
    summary: "print the version",
    run: () => {
      console.log(`gokv ${VERSION}`);
      return Promise.resolve(EXIT_OK);
    },
  },
};

/** The program's usage text. */
export function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "gokv — a distributed, fault-tolerant key-value store (Raft + LSM)",
    "",
    "Usage: gokv <command> [options]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(w)}  ${c.summary}`),
    "",
    "Run `gokv <command> --help` for a command's options.",
    "Exit codes: 0 success, 1 operation failed, 2 usage or configuration error.",
  ].join("\n");
}

/** Runs the CLI with `argv` and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    if (name === undefined) {
      console.error(usage());
      return EXIT_USAGE;
    }
    console.log(usage());
    return EXIT_OK;
  }
  if (name === "--version" || name === "-V") return await COMMANDS.version.run([]);
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`gokv: unknown command "${name}"\n\n${usage()}`);
    return EXIT_USAGE;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    const e = asUsageError(err);
    if (e instanceof UsageError) {
      console.error(`gokv ${name}: ${e.message}\nRun \`gokv ${name} --help\` for usage.`);
      return EXIT_USAGE;
    }
    if (e instanceof ConfigError) {
      console.error(`gokv: config error: ${e.message}`);
      return EXIT_USAGE;
    }
    console.error(`gokv ${name}: ${(e as Error)?.message ?? String(e)}`);
    return EXIT_FAILED;
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // Commands that keep resources open (server) exit on their own; others exit here.
  Deno.exit(code);
}
