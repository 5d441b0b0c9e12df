/**
 * `gokv token hash [TOKEN]` and `gokv token new --name N --role R [--prefix P ...]`: the helpers
 * for the tokens file (server/auth.ts). `hash` reads the token from stdin when it is not given,
 * so that it stays out of the shell history.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { asUsageError, EXIT_OK, UsageError } from "../config/cli.ts";
import { hashToken, newToken, type Role, ROLES } from "./auth.ts";

/** The token command's usage text. */
export const TOKEN_USAGE = `Usage:
  gokv token hash [TOKEN]                      print the hash to put in the tokens file
                                               (reads TOKEN from stdin when not given)
  gokv token new --name N --role R [--prefix P]...
                                               make a random token; prints it and its entry

Roles: read (get, scan, watch), write (+ put, delete, transactions), admin (+ membership,
leader transfer, snapshot backups). --prefix limits the token to keys under P (repeatable).
The tokens file (security.tokens_file) is reloaded on SIGHUP.`;

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const c of Deno.stdin.readable) chunks.push(c);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all).trim();
}

/** Runs `gokv token ...`; returns the exit code. */
export async function tokenCommand(
  argv: string[],
  out: (line: string) => void = console.log,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        name: { type: "string" },
        role: { type: "string" },
        prefix: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw asUsageError(e);
  }
  const { values: v, positionals: pos } = parsed;
  if (v.help) {
    out(TOKEN_USAGE);
    return EXIT_OK;
  }
  const sub = pos[0];
  if (sub === "hash") {
    if (pos.length > 2) throw new UsageError("token hash takes at most one token");
    const token = pos[1] ?? await readStdin();
    if (token === "") throw new UsageError("no token given (argument or stdin)");
    out(hashToken(token));
    return EXIT_OK;
  }
  if (sub === "new") {
    if (pos.length !== 1) throw new UsageError("token new takes no positional arguments");
    if (!v.name) throw new UsageError("--name is required");
    if (!ROLES.includes(v.role as Role)) {
      throw new UsageError(`--role must be one of ${ROLES.join(", ")}`);
    }
    const token = newToken();
    out(`token: ${token}`);
    out(`# add to the tokens file (security.tokens_file), then send the nodes SIGHUP:`);
    out(`  - name: ${JSON.stringify(v.name)}`);
    out(`    role: ${v.role}`);
    if (v.prefix && v.prefix.length > 0) out(`    prefixes: ${JSON.stringify(v.prefix)}`);
    out(`    hash: ${hashToken(token)}`);
    return EXIT_OK;
  }
  throw new UsageError("token needs a subcommand: hash or new");
}
