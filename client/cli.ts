/**
 * The client commands of the `gokv` executable: set, get, delete, scan, member, leader, status,
 * bench. Results print exactly as go-kv prints them (see client/format.ts); a failed operation
 * prints "❌ Failed to execute command." on stdout and the reason on stderr (exit 1); usage and
 * configuration errors print on stderr (exit 2).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Client, type ClientOptions, type ConsistencyLevel } from "./client.ts";
import { NotFoundError } from "./errors.ts";
import {
  FAILED,
  formatMembersTable,
  formatStatusTable,
  progressBar,
  SUCCESS_NIL,
  SUCCESS_NOT_FOUND,
  successResult,
  successValue,
} from "./format.ts";
import { runBench } from "./bench.ts";
import { clientEntryJson, parseDuration, parseTxnJson } from "./txn_json.ts";
import { parseVersionstamp, versionstampHex } from "../storage/kv_model.ts";
import { asUsageError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from "../config/cli.ts";
import { ConfigError, loadConfig } from "../config/config.ts";

/** Where the CLI writes (tests capture it). */
export interface CliIO {
  /** A line to stdout. */
  out(line: string): void;
  /** A line to stderr. */
  err(line: string): void;
  /** Text to stderr without a newline (progress bar). */
  progress?(text: string): void;
  /** Whether stderr is a terminal (a redrawn progress bar) or not (plain progress lines). */
  terminal?: boolean;
}

const encoder = new TextEncoder();

/**
 * `gokv bench` progress: on a terminal one redrawn line (bar, ops, live ops/s over the last
 * interval); otherwise a plain line about once a second, so logs and pipes stay readable.
 */
function benchProgress(
  tty: boolean,
  write: (text: string) => void,
): { update: (fraction: number, ops: number) => void; done: () => void } {
  let lastT = performance.now();
  let lastOps = 0;
  let rate = 0;
  let lastLine = -Infinity;
  let shown = false;
  const line = (f: number, ops: number) =>
    `${Math.floor(f * 100)}% ${ops} ops ${Math.round(rate)} ops/s`;
  return {
    update: (f, ops) => {
      const now = performance.now();
      if (now > lastT) rate = ((ops - lastOps) * 1000) / (now - lastT);
      lastT = now;
      lastOps = ops;
      if (tty) {
        write(`\r${progressBar(f, 30, `${ops} ops  ${Math.round(rate)} ops/s`)}\x1b[K`);
        shown = true;
      } else if (now - lastLine >= 1000 && f < 1) {
        write(`bench: ${line(f, ops)}\n`);
        lastLine = now;
      }
    },
    done: () => {
      if (tty && shown) write("\n");
    },
  };
}

/** The process's stdout/stderr. */
export const stdio: CliIO = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  progress: (text) => {
    try {
      Deno.stderr.writeSync(encoder.encode(text));
    } catch { /* stderr closed */ }
  },
};

/** The connection options every client command takes (`gokv snapshot save` too). */
export const SECURITY_OPTIONS = {
  cacert: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  token: { type: "string" },
} as const;

const COMMON = {
  config: { type: "string", short: "c" },
  endpoints: { type: "string", short: "e" },
  "timeout-ms": { type: "string" },
  help: { type: "boolean", short: "h" },
  ...SECURITY_OPTIONS,
} as const;

/** Help lines of {@link SECURITY_OPTIONS}. */
export const SECURITY_HELP = `
Security options (README "Security"):
      --cacert FILE       connect over TLS, trusting the CA in FILE (env GOKV_CACERT)
      --cert FILE         client certificate, for nodes with client_cert_auth (env GOKV_CERT)
      --key FILE          its private key (env GOKV_KEY)
      --token TOKEN       bearer token, for nodes with a tokens file (env GOKV_TOKEN)`;

const COMMON_HELP = `
Cluster options:
  -c, --config FILE       config file listing the nodes (default conf/config.yaml)
  -e, --endpoints A,B,C   client addresses host:port (instead of --config)
      --timeout-ms N      overall deadline of the operation (default 10000)
  -h, --help              show this help${SECURITY_HELP}`;

/** What the CLI connects with: TLS files read from `--cacert/--cert/--key` (or `GOKV_CACERT`,
 * `GOKV_CERT`, `GOKV_KEY`) and `--token` (or `GOKV_TOKEN`). TLS is on when any file is given. */
export async function connectionSecurity(
  values: Record<string, unknown>,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Promise<Pick<ClientOptions, "tls" | "token">> {
  const pick = (flag: string, name: string) => {
    const v = values[flag];
    if (typeof v === "string") return v;
    const e = env(name);
    return e === undefined || e === "" ? undefined : e;
  };
  const read = async (flag: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      throw new UsageError(`--${flag} ${path}: ${(e as Error).message}`);
    }
  };
  const caPath = pick("cacert", "GOKV_CACERT");
  const certPath = pick("cert", "GOKV_CERT");
  const keyPath = pick("key", "GOKV_KEY");
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new UsageError("--cert and --key go together");
  }
  const out: Pick<ClientOptions, "tls" | "token"> = {};
  if (caPath !== undefined || certPath !== undefined) {
    out.tls = {
      caCert: await read("cacert", caPath),
      cert: await read("cert", certPath),
      key: await read("key", keyPath),
    };
  }
  const token = pick("token", "GOKV_TOKEN");
  if (token !== undefined) out.token = token.trim();
  return out;
}

const HELP: Record<string, string> = {
  set:
    "Usage: gokv set <key> <value> [--ttl 30s] [options]\n\nWrites value at key; with --ttl the cluster deletes it after that long (1500ms, 30s, 5m, 1h).",
  get:
    "Usage: gokv get <key> [--consistency linearizable|serializable] [-w json] [options]\n\nReads a key (linearizable by default); -w json prints key, value, versionstamp and encoding.",
  cas: `Usage: gokv cas <key> <expected-versionstamp|-> <value> [--ttl 30s] [options]

Compare-and-set: writes value only if the key's versionstamp (gokv get -w json) is the expected
one, or with "-" only if the key is missing. Prints the new versionstamp; exits 1 if the check
failed (nothing written).`,
  watch:
    `Usage: gokv watch <key>... | --prefix P [--after VERSIONSTAMP] [--count N] [-w json] [options]

Prints the current state of the keys (or of every key under P), then one line per change as it is
committed, until interrupted (Ctrl-C) or N lines: "<versionstamp> PUT <key> <value>" or
"<versionstamp> DELETE <key>" (-w json: one JSON object per event). --after resumes after a
versionstamp (no initial state). The watch moves to another node when its node fails.`,
  txn: `Usage: gokv txn [FILE|-] [options]

Runs an atomic operation from a JSON file (or stdin): {"checks": [{"key", "versionstamp"}],
"mutations": [{"type": "set"|"delete"|"sum"|"min"|"max"|"setVersionstampedKey", "key", ...}]}
(see client/txn_json.ts). Prints {"ok": true, "versionstamp"} or {"ok": false, "failedChecks"};
exits 1 if a check failed.`,
  delete: "Usage: gokv delete <key> [options]\n\nDeletes a key.",
  scan:
    "Usage: gokv scan [--prefix P] [--start S] [--end E] [--limit N] [--json] [options]\n\nLists key/value pairs in key order, one `key<TAB>value` per line.",
  member: `Usage:
  gokv member list [--json] [options]
  gokv member add <id> <peer-addr> <client-addr> <http-addr> [options]
  gokv member remove <id> [options]

Lists, adds (as a learner, promoted once caught up) or removes cluster members.
Start the new node (before or after adding it) with \`gokv server --config FILE --id <id> --join\`.`,
  leader: "Usage: gokv leader transfer <id> [options]\n\nHands leadership to node <id>.",
  status:
    "Usage: gokv status [--json] [options]\n\nShows a table of every node (id, role, term, leader, indexes, sizes).",
  bench: `Usage: gokv bench [options]

Closed-loop load: C clients each with one request in flight.
  --clients N        concurrent clients (default 16)
  --connections N    client connections shared by them (default 1)
  --read-ratio F     fraction of gets, 0..1 (default 0: puts only)
  --keys N           key space (default 10000)
  --key-size N       key bytes (default 15: "key" + 12 digits)
  --value-size N     value bytes (default 100)
  --duration S       seconds to run (default 10) ...
  --count N          ... or number of operations
  --consistency C    linearizable (default) | serializable
  --json             print the result as JSON`,
};

function help(name: string): string {
  return `${HELP[name]}\n${COMMON_HELP}`;
}

function int(name: string, v: string | undefined, def: number, min = 0): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}`);
  }
  return n;
}

function num(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a number in [${min}, ${max}]`);
  }
  return n;
}

function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new UsageError(`--ttl: ${(e as Error).message}`);
  }
}

function consistencyArg(v: string | undefined): ConsistencyLevel {
  if (v === undefined || v === "linearizable" || v === "serializable") {
    return v ?? "linearizable";
  }
  throw new UsageError(`--consistency must be linearizable or serializable`);
}

async function endpointsOf(values: { config?: string; endpoints?: string }): Promise<string[]> {
  if (values.endpoints !== undefined) {
    const eps = values.endpoints.split(",").map((s) => s.trim()).filter((s) => s);
    if (eps.length === 0) throw new UsageError("--endpoints is empty");
    for (const e of eps) {
      if (!/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(e)) {
        throw new UsageError(`endpoint "${e}" is not host:port`);
      }
    }
    return eps;
  }
  const cfg = await loadConfig(values.config ?? "conf/config.yaml");
  return cfg.nodes.map((n) => n.client);
}

function positionals(p: string[], want: number, usage: string): string[] {
  if (p.length !== want) {
    throw new UsageError(
      `expected ${want} argument${want === 1 ? "" : "s"} (${usage}), got ${p.length}`,
    );
  }
  return p;
}

function nodeId(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 0x7fffffff) {
    throw new UsageError(`"${s}" is not a node id (a positive integer)`);
  }
  return n;
}

/**
 * Runs client command `name` with its arguments; returns the exit code (0 ok, 1 failed,
 * 2 usage/config error).
 */
export async function clientCommand(
  name: string,
  argv: string[],
  io: CliIO = stdio,
): Promise<number> {
  if (!(name in HELP)) {
    io.err(`gokv: unknown command "${name}"`);
    return EXIT_USAGE;
  }
  let client: Client | undefined;
  try {
    const extra = {
      consistency: { type: "string" },
      prefix: { type: "string" },
      start: { type: "string" },
      end: { type: "string" },
      limit: { type: "string" },
      json: { type: "boolean" },
      clients: { type: "string" },
      connections: { type: "string" },
      "read-ratio": { type: "string" },
      keys: { type: "string" },
      "key-size": { type: "string" },
      "value-size": { type: "string" },
      duration: { type: "string" },
      count: { type: "string" },
      ttl: { type: "string" },
      after: { type: "string" },
      "write-out": { type: "string", short: "w" },
    } as const;
    const allowed: Record<string, (keyof typeof extra)[]> = {
      set: ["ttl"],
      get: ["consistency", "write-out"],
      cas: ["ttl"],
      watch: ["prefix", "after", "count", "write-out"],
      txn: [],
      delete: [],
      scan: ["prefix", "start", "end", "limit", "json", "consistency"],
      member: ["json"],
      leader: [],
      status: ["json"],
      bench: [
        "clients",
        "connections",
        "read-ratio",
        "keys",
        "key-size",
        "value-size",
        "duration",
        "count",
        "consistency",
        "json",
      ],
    };
    const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
      ...COMMON,
    };
    for (const k of allowed[name]) options[k] = extra[k];
    const { values: v, positionals: pos } = parseArgs({
      args: argv,
      options,
      allowPositionals: true,
      strict: true,
    }) as { values: Record<string, string | boolean | undefined>; positionals: string[] };
    if (v.help) {
      io.out(help(name));
      return EXIT_OK;
    }
    const s = (k: string) => v[k] as string | undefined;
    const timeoutMs = int("timeout-ms", s("timeout-ms"), 10_000, 1);

    // Validate arguments fully before touching the network.
    let run: (c: Client) => Promise<number>;
    switch (name) {
      case "set": {
        const [key, value] = positionals(pos, 2, "<key> <value>");
        if (key === "") throw new UsageError("the key must not be empty");
        const ttl = s("ttl") === undefined ? undefined : durationArg(s("ttl")!);
        run = async (c) => {
          if (ttl === undefined) await c.put(key, value);
          else await c.putWithTtl(key, value, ttl);
          io.out(SUCCESS_NIL);
          return EXIT_OK;
        };
        break;
      }
      case "cas": {
        const [key, expected, value] = positionals(
          pos,
          3,
          "<key> <expected-versionstamp|-> <value>",
        );
        if (key === "") throw new UsageError("the key must not be empty");
        let vs: Uint8Array | null = null;
        if (expected !== "-") {
          try {
            vs = parseVersionstamp(expected);
          } catch {
            throw new UsageError(`"${expected}" is not a versionstamp (20 hex digits) or -`);
          }
        }
        const ttl = s("ttl") === undefined ? undefined : durationArg(s("ttl")!);
        run = async (c) => {
          const r = await c.atomic().check(key, vs).set(key, value, { expireIn: ttl }).commit();
          if (!r.ok) {
            io.out(FAILED);
            io.err(
              `compare failed: ${
                vs
                  ? `the versionstamp of "${key}" is not ${versionstampHex(vs)}`
                  : `"${key}" exists`
              }; nothing was written`,
            );
            return EXIT_FAILED;
          }
          io.out(successResult(r.versionstamp));
          return EXIT_OK;
        };
        break;
      }
      case "watch": {
        const prefix = s("prefix");
        if (pos.length === 0 && prefix === undefined) {
          throw new UsageError("give the keys to watch or --prefix P");
        }
        const after = s("after");
        if (after !== undefined) {
          try {
            parseVersionstamp(after);
          } catch {
            throw new UsageError(`--after "${after}" is not a versionstamp (20 hex digits)`);
          }
        }
        const count = s("count") === undefined ? Infinity : int("count", s("count"), 0, 1);
        const out = s("write-out");
        if (out !== undefined && out !== "json" && out !== "simple") {
          throw new UsageError(`-w must be json or simple, not "${out}"`);
        }
        run = async (c) => {
          const ac = new AbortController();
          const stop = () => ac.abort();
          try {
            Deno.addSignalListener("SIGINT", stop);
          } catch { /* no signals here */ }
          const d = new TextDecoder();
          let lines = 0;
          try {
            const sel = { keys: pos, prefixes: prefix !== undefined ? [prefix] : [] };
            for await (const m of c.watch(sel, { after, signal: ac.signal, retryForMs: 60_000 })) {
              if (out === "json") {
                const list = m.type === "initial" ? m.entries : m.changes;
                io.out(JSON.stringify({
                  type: m.type,
                  versionstamp: m.versionstamp,
                  [m.type === "initial" ? "entries" : "changes"]: list.map(clientEntryJson),
                }));
                if (++lines >= count) break;
                continue;
              }
              const list = m.type === "initial" ? m.entries : m.changes;
              for (const e of list) {
                if (m.type === "initial" && e.value === null) continue;
                io.out(
                  e.value === null
                    ? `${m.versionstamp} DELETE ${d.decode(e.key)}`
                    : `${e.versionstamp ?? m.versionstamp} PUT ${d.decode(e.key)} ${
                      d.decode(e.value)
                    }`,
                );
                if (++lines >= count) break;
              }
              if (lines >= count) break;
            }
          } finally {
            try {
              Deno.removeSignalListener("SIGINT", stop);
            } catch { /* no signals here */ }
          }
          return EXIT_OK;
        };
        break;
      }
      case "txn": {
        if (pos.length > 1) throw new UsageError("expected at most one argument (FILE or -)");
        const file = pos[0] ?? "-";
        let text: string;
        try {
          text = file === "-"
            ? await new Response(Deno.stdin.readable).text()
            : await Deno.readTextFile(file);
        } catch (e) {
          throw new UsageError(
            `cannot read ${file === "-" ? "stdin" : file}: ${(e as Error).message}`,
          );
        }
        let op;
        try {
          op = parseTxnJson(JSON.parse(text));
        } catch (e) {
          throw new UsageError(`not a transaction: ${(e as Error).message}`);
        }
        run = async (c) => {
          const b = c.atomic();
          for (const ch of op.checks) b.check(ch.key, ch.versionstamp);
          b.addMutations(op.mutations);
          const r = await b.commit();
          io.out(JSON.stringify(r));
          return r.ok ? EXIT_OK : EXIT_FAILED;
        };
        break;
      }
      case "get": {
        const [key] = positionals(pos, 1, "<key>");
        if (key === "") throw new UsageError("the key must not be empty");
        const consistency = consistencyArg(s("consistency"));
        const out = s("write-out");
        if (out !== undefined && out !== "json" && out !== "simple") {
          throw new UsageError(`-w must be json or simple, not "${out}"`);
        }
        run = async (c) => {
          if (out === "json") {
            const e = await c.getEntry(key, { consistency });
            io.out(JSON.stringify(clientEntryJson(e)));
            return EXIT_OK;
          }
          const value = await c.getString(key, { consistency });
          io.out(value === undefined ? SUCCESS_NOT_FOUND : successValue(value));
          return EXIT_OK;
        };
        break;
      }
      case "delete": {
        const [key] = positionals(pos, 1, "<key>");
        if (key === "") throw new UsageError("the key must not be empty");
        run = async (c) => {
          await c.delete(key);
          io.out(SUCCESS_NIL);
          return EXIT_OK;
        };
        break;
      }
      case "scan": {
        positionals(pos, 0, "no positional arguments");
        const limit = s("limit") === undefined ? undefined : int("limit", s("limit"), 0, 1);
        const consistency = consistencyArg(s("consistency"));
        run = async (c) => {
          // Pages are fetched and printed one at a time: memory stays bounded.
          const pairs = c.list({
            prefix: s("prefix"),
            start: s("start"),
            end: s("end"),
            limit,
            consistency,
          });
          const d = new TextDecoder();
          if (v.json) {
            // A JSON array written element by element.
            let n = 0;
            for await (const p of pairs) {
              const item = JSON.stringify({ key: d.decode(p.key), value: d.decode(p.value) });
              io.out(`${n++ === 0 ? "[" : ","}${item}`);
            }
            io.out(n === 0 ? "[]" : "]");
          } else {
            for await (const p of pairs) io.out(`${d.decode(p.key)}\t${d.decode(p.value)}`);
          }
          return EXIT_OK;
        };
        break;
      }
      case "member": {
        const sub = pos[0];
        if (sub === "list") {
          positionals(pos, 1, "list");
          run = async (c) => {
            const members = await c.members();
            if (v.json) {
              io.out(JSON.stringify(members));
            } else {
              let leader = 0;
              try {
                leader = (await c.status()).leader;
              } catch { /* table without leader mark */ }
              io.out(formatMembersTable(members, leader));
            }
            return EXIT_OK;
          };
        } else if (sub === "add") {
          const [, id, peer, clientAddr, http] = positionals(
            pos,
            5,
            "add <id> <peer-addr> <client-addr> <http-addr>",
          );
          const member = { id: nodeId(id), peer, client: clientAddr, http };
          for (const a of [peer, clientAddr, http]) {
            if (!/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(a)) {
              throw new UsageError(`"${a}" is not a host:port address`);
            }
          }
          run = async (c) => {
            await c.addMember(member, { timeoutMs: Math.max(timeoutMs, 30_000) });
            io.out(successResult(`member ${member.id} added`));
            return EXIT_OK;
          };
        } else if (sub === "remove") {
          const [, id] = positionals(pos, 2, "remove <id>");
          const nid = nodeId(id);
          run = async (c) => {
            await c.removeMember(nid);
            io.out(successResult(`member ${nid} removed`));
            return EXIT_OK;
          };
        } else {
          throw new UsageError(`member needs a subcommand: list, add or remove`);
        }
        break;
      }
      case "leader": {
        if (pos[0] !== "transfer") throw new UsageError(`leader needs a subcommand: transfer <id>`);
        const [, id] = positionals(pos, 2, "transfer <id>");
        const nid = nodeId(id);
        run = async (c) => {
          await c.transferLeader(nid);
          io.out(successResult(`leadership transferred to ${nid}`));
          return EXIT_OK;
        };
        break;
      }
      case "status": {
        positionals(pos, 0, "no positional arguments");
        run = async (c) => {
          const rows = await c.statusAll({ timeoutMs: Math.min(timeoutMs, 3_000) });
          if (v.json) {
            io.out(JSON.stringify(
              rows.map((r) => ({
                endpoint: r.endpoint,
                status: r.status,
                error: r.error?.message,
              })),
            ));
          } else {
            io.out(formatStatusTable(rows));
          }
          return rows.some((r) => r.status) ? EXIT_OK : EXIT_FAILED;
        };
        break;
      }
      case "bench": {
        positionals(pos, 0, "no positional arguments");
        const count = s("count") === undefined ? undefined : int("count", s("count"), 0, 1);
        const durationMs = num("duration", s("duration"), 10, 0.1, 86400) * 1000;
        const opts = {
          clients: int("clients", s("clients"), 16, 1),
          connections: int("connections", s("connections"), 1, 1),
          readRatio: num("read-ratio", s("read-ratio"), 0, 0, 1),
          keySpace: int("keys", s("keys"), 10_000, 1),
          keySize: int("key-size", s("key-size"), 15, 4),
          valueSize: int("value-size", s("value-size"), 100, 0),
          count,
          durationMs: count === undefined ? durationMs : undefined,
          consistency: consistencyArg(s("consistency")),
        };
        const endpoints = await endpointsOf(v as { config?: string; endpoints?: string });
        const security = await connectionSecurity(v);
        const tty = io.terminal ?? Deno.stderr.isTerminal();
        const report = benchProgress(tty, (text) => io.progress?.(text));
        const r = await runBench({ ...opts, endpoints, security, onProgress: report.update });
        report.done();
        if (v.json) {
          io.out(JSON.stringify(r));
        } else {
          const l = r.latency;
          io.out(
            `${r.ops} ops in ${r.seconds.toFixed(2)} s: ${Math.round(r.opsPerSec)} ops/s ` +
              `(${r.puts} puts, ${r.gets} gets, ${r.errors} errors)`,
          );
          io.out(
            `latency ms: p50 ${l.p50.toFixed(2)}  p95 ${l.p95.toFixed(2)}  p99 ${
              l.p99.toFixed(2)
            }  max ${l.max.toFixed(2)}`,
          );
          if (r.firstError) io.err(`first error: ${r.firstError}`);
        }
        return r.errors > 0 && r.ops === 0 ? EXIT_FAILED : EXIT_OK;
      }
      default:
        throw new UsageError(`unknown command ${name}`);
    }
    const endpoints = await endpointsOf(v as { config?: string; endpoints?: string });
    const security = await connectionSecurity(v);
    client = await Client.connect({ endpoints, timeoutMs, ...security });
    return await run(client);
  } catch (e) {
    const err = asUsageError(e);
    if (err instanceof UsageError) {
      io.err(`gokv ${name}: ${err.message}\nRun \`gokv ${name} --help\` for usage.`);
      return EXIT_USAGE;
    }
    if (err instanceof ConfigError) {
      io.err(`gokv: config error: ${err.message}`);
      return EXIT_USAGE;
    }
    io.out(FAILED);
    io.err(
      err instanceof NotFoundError
        ? `not found: ${err.what}`
        : `${(err as Error).name}: ${(err as Error).message}`,
    );
    return EXIT_FAILED;
  } finally {
    await client?.close();
  }
}
