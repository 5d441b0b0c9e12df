/**
 * Client authentication and authorization: the one place that decides whether a request may run.
 *
 * - **Authentication**: bearer tokens, configured as SHA-256 hashes in a tokens file
 *   (`security.tokens_file`, format below) that the node reloads on SIGHUP. A client presents
 *   its token in the binary protocol's `Auth` handshake or as `Authorization: Bearer <token>`
 *   over HTTP; {@link AuthGate.authenticate} turns it into a {@link Principal}. Without a tokens
 *   file every request runs as {@link OPEN_PRINCIPAL} (an unscoped admin): loopback development.
 * - **Authorization**: {@link authorize}`(principal, op, scope)` throws
 *   {@link UnauthenticatedError} (no or unknown token: HTTP 401, status `Unauthenticated`) or
 *   {@link PermissionDeniedError} (role or key prefixes do not allow it: HTTP 403, status
 *   `PermissionDenied`). Every front end (binary protocol, HTTP API, KV Connect, snapshot
 *   backups) calls it before it touches the service; /work/wt/SECURITY_API.md describes the API
 *   for new ops.
 *
 * Roles are ordered: `read` (get, scan, watch, snapshot reads, status, member list) < `write`
 * (also put, delete, transactions, atomic writes, client sessions) < `admin` (also membership
 * changes, leader transfer, snapshot backups). A token may be scoped to key prefixes: then every
 * key it reads or writes, and every range it scans or watches, must lie under one of them, and
 * the whole-database operations (backups) are refused.
 *
 * Tokens file (YAML):
 *
 * ```yaml
 * tokens:
 *   - name: ops            # shown in logs; unique
 *     role: admin          # read | write | admin
 *     hash: sha256:<64 hex digits>   # `gokv token hash <token>` prints it
 *   - name: app-reader
 *     role: read
 *     prefixes: ["app/"]   # optional: only keys under these prefixes
 *     hash: sha256:...
 * ```
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { PermissionDeniedError, UnauthenticatedError } from "../client/errors.ts";
import type { Logger } from "../raft/logger.ts";
import { compareBytes as compare, hasPrefix as startsWith, prefixEnd } from "../storage/bytes.ts";

export { PermissionDeniedError, UnauthenticatedError };

/** A token's role. */
export type Role = "read" | "write" | "admin";

/** The roles, weakest first. */
export const ROLES: readonly Role[] = ["read", "write", "admin"];

/**
 * What a request does, as far as authorization is concerned. New front ends map their requests
 * onto these names (add one here, with its role in {@link OP_ROLES}, for a new kind of request).
 */
export type AuthOp =
  | "get"
  | "scan"
  | "watch"
  | "snapshot_read"
  | "status"
  | "members"
  | "put"
  | "delete"
  | "txn"
  | "atomic_write"
  | "session"
  | "member_change"
  | "transfer"
  | "snapshot_backup";

/** The weakest role allowed to run each op. */
export const OP_ROLES: Readonly<Record<AuthOp, Role>> = {
  get: "read",
  scan: "read",
  watch: "read",
  snapshot_read: "read",
  status: "read",
  members: "read",
  put: "write",
  delete: "write",
  txn: "write",
  atomic_write: "write",
  session: "write",
  member_change: "admin",
  transfer: "admin",
  snapshot_backup: "admin",
};

/** Ops that touch the whole key space at once: refused to prefix-scoped tokens. */
const WHOLE_DB_OPS: ReadonlySet<AuthOp> = new Set(["snapshot_backup"]);

/** Who sent a request. */
export interface Principal {
  /** The token's name ("" for {@link OPEN_PRINCIPAL}). */
  readonly name: string;
  /** The token's role. */
  readonly role: Role;
  /** Key prefixes the token is limited to; undefined: every key. */
  readonly prefixes?: readonly Uint8Array[];
}

/** The principal of every request when the node has no tokens file. */
export const OPEN_PRINCIPAL: Principal = Object.freeze({ name: "", role: "admin" });

/** A range of keys (as a scan or a watch names it). */
export interface KeyRange {
  /** Inclusive lower bound. */
  start?: Uint8Array;
  /** Exclusive upper bound. */
  end?: Uint8Array;
  /** Only keys with this prefix. */
  prefix?: Uint8Array;
}

/** The keys a request touches: one key, a range, or several of either. */
export type KeyScope = Uint8Array | KeyRange | readonly (Uint8Array | KeyRange)[];

/** Whether every key of `r` starts with `p`. */
function rangeWithin(r: KeyRange, p: Uint8Array): boolean {
  if (r.prefix !== undefined && startsWith(r.prefix, p)) return true;
  // The range's effective bounds [lo, hi) must lie inside [p, prefixEnd(p)).
  let lo = r.start ?? new Uint8Array();
  let hi = r.end;
  if (r.prefix !== undefined) {
    if (compare(r.prefix, lo) > 0) lo = r.prefix;
    const pe = prefixEnd(r.prefix);
    if (pe !== undefined && (hi === undefined || compare(pe, hi) < 0)) hi = pe;
  }
  if (!startsWith(lo, p)) return false;
  const pe = prefixEnd(p);
  if (pe === undefined) return true;
  return hi !== undefined && compare(hi, pe) <= 0;
}

function scopeAllowed(prefixes: readonly Uint8Array[], s: Uint8Array | KeyRange): boolean {
  if (s instanceof Uint8Array) return prefixes.some((p) => startsWith(s, p));
  return prefixes.some((p) => rangeWithin(s, p));
}

function describe(p: Principal): string {
  return p.name === "" ? "this client" : `token "${p.name}" (role ${p.role})`;
}

/**
 * Decides whether `principal` may run `op` on the keys of `scope` (omit it for ops without
 * keys). Throws {@link UnauthenticatedError} when there is no principal (no or an unknown token)
 * and {@link PermissionDeniedError} when the role is too weak or a key lies outside the token's
 * prefixes.
 *
 * @example
 * ```ts
 * import { authorize, OPEN_PRINCIPAL, type Principal } from "./auth.ts";
 * const reader: Principal = { name: "r", role: "read", prefixes: [new TextEncoder().encode("app/")] };
 * authorize(reader, "get", new TextEncoder().encode("app/1")); // allowed
 * authorize(OPEN_PRINCIPAL, "transfer"); // allowed: no tokens file
 * try {
 *   authorize(reader, "put", new TextEncoder().encode("app/1"));
 * } catch (e) {
 *   console.log((e as Error).name); // "PermissionDeniedError"
 * }
 * ```
 */
export function authorize(principal: Principal | undefined, op: AuthOp, scope?: KeyScope): void {
  if (principal === undefined) {
    throw new UnauthenticatedError(
      "this node requires a bearer token (--token or GOKV_TOKEN; HTTP: Authorization: Bearer)",
    );
  }
  const need = OP_ROLES[op];
  if (ROLES.indexOf(principal.role) < ROLES.indexOf(need)) {
    throw new PermissionDeniedError(
      `${describe(principal)} may not ${op.replaceAll("_", " ")}: it needs role ${need}`,
    );
  }
  const prefixes = principal.prefixes;
  if (prefixes === undefined) return;
  if (WHOLE_DB_OPS.has(op)) {
    throw new PermissionDeniedError(
      `${describe(principal)} is limited to key prefixes and may not ${op.replaceAll("_", " ")}`,
    );
  }
  if (scope === undefined) return;
  const items = Array.isArray(scope) ? scope : [scope as Uint8Array | KeyRange];
  for (const s of items) {
    if (!scopeAllowed(prefixes, s)) {
      throw new PermissionDeniedError(
        `${describe(principal)} may only use keys under ${
          prefixes.map((p) => JSON.stringify(new TextDecoder().decode(p))).join(", ")
        }`,
      );
    }
  }
}

/** The form in which a token is stored in the tokens file: `sha256:<hex>`. */
export function hashToken(token: string): string {
  return `sha256:${createHash("sha256").update(token).digest("hex")}`;
}

/** A new random token (32 bytes, base64url): `gokv token new`. */
export function newToken(): string {
  return `gokv_${randomBytes(32).toString("base64url")}`;
}

/** The tokens file is malformed (the message names the file and the entry). */
export class TokensFileError extends Error {
  /** Creates the error. */
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "TokensFileError";
  }
}

const ENTRY_KEYS = new Set(["name", "role", "hash", "prefixes"]);

/** Parses tokens-file text into principals by hash. Throws {@link TokensFileError}. */
export function parseTokens(text: string, file = "tokens file"): Map<string, Principal> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new TokensFileError(file, `invalid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  const list = (doc as { tokens?: unknown })?.tokens;
  if (!doc || typeof doc !== "object" || !Array.isArray(list)) {
    throw new TokensFileError(file, "expected a mapping with a `tokens:` list");
  }
  const extra = Object.keys(doc).filter((k) => k !== "tokens");
  if (extra.length > 0) throw new TokensFileError(file, `unknown key "${extra[0]}"`);
  const out = new Map<string, Principal>();
  const names = new Set<string>();
  list.forEach((e: unknown, i) => {
    const where = `tokens[${i}]`;
    if (!e || typeof e !== "object" || Array.isArray(e)) {
      throw new TokensFileError(file, `${where}: expected a mapping`);
    }
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!ENTRY_KEYS.has(k)) throw new TokensFileError(file, `${where}: unknown key "${k}"`);
    }
    if (typeof o.name !== "string" || o.name === "") {
      throw new TokensFileError(file, `${where}.name: a non-empty string is required`);
    }
    if (names.has(o.name)) throw new TokensFileError(file, `${where}.name: duplicate "${o.name}"`);
    names.add(o.name);
    if (!ROLES.includes(o.role as Role)) {
      throw new TokensFileError(file, `${where}.role: must be one of ${ROLES.join(", ")}`);
    }
    if (typeof o.hash !== "string" || !/^sha256:[0-9a-f]{64}$/.test(o.hash)) {
      throw new TokensFileError(
        file,
        `${where}.hash: must be sha256:<64 lowercase hex digits> (gokv token hash <token>)`,
      );
    }
    if (out.has(o.hash)) throw new TokensFileError(file, `${where}.hash: duplicate hash`);
    let prefixes: Uint8Array[] | undefined;
    if (o.prefixes !== undefined) {
      if (
        !Array.isArray(o.prefixes) || o.prefixes.length === 0 ||
        o.prefixes.some((p) => typeof p !== "string" || p === "")
      ) {
        throw new TokensFileError(file, `${where}.prefixes: a list of non-empty strings`);
      }
      prefixes = o.prefixes.map((p: string) => new TextEncoder().encode(p));
    }
    out.set(o.hash, Object.freeze({ name: o.name, role: o.role as Role, prefixes }));
  });
  return out;
}

/** Options of {@link AuthGate.open}. */
export interface AuthGateOptions {
  /** The tokens file ("" or undefined: no authentication). */
  tokensFile?: string;
  /** /metrics and /healthz need a token too. */
  protectMetrics?: boolean;
  /** Where reloads are logged. */
  logger?: Logger;
}

/** A node's authentication state: the tokens in force, reloaded from their file on demand. */
export class AuthGate {
  #tokens: Map<string, Principal> | undefined;
  readonly #file: string;
  readonly #log: Logger | undefined;
  /** /metrics and /healthz need a token (only with a tokens file). */
  readonly protectMetrics: boolean;

  private constructor(o: AuthGateOptions, tokens: Map<string, Principal> | undefined) {
    this.#file = o.tokensFile ?? "";
    this.#tokens = tokens;
    this.#log = o.logger;
    this.protectMetrics = (o.protectMetrics ?? false) && tokens !== undefined;
  }

  /** Reads the tokens file (if any). Throws {@link TokensFileError}. */
  static async open(o: AuthGateOptions = {}): Promise<AuthGate> {
    const file = o.tokensFile ?? "";
    return new AuthGate(o, file === "" ? undefined : await readTokens(file));
  }

  /** A gate without tokens: every request is {@link OPEN_PRINCIPAL}. */
  static none(): AuthGate {
    return new AuthGate({}, undefined);
  }

  /** Whether clients must authenticate. */
  get enabled(): boolean {
    return this.#tokens !== undefined;
  }

  /** Tokens in force. */
  get size(): number {
    return this.#tokens?.size ?? 0;
  }

  /**
   * The principal of `token`: {@link OPEN_PRINCIPAL} without a tokens file; undefined for a
   * missing token; throws {@link UnauthenticatedError} for a token that is not in the file.
   */
  authenticate(token: string | null | undefined): Principal | undefined {
    if (this.#tokens === undefined) return OPEN_PRINCIPAL;
    if (token === null || token === undefined || token === "") return undefined;
    const p = this.#tokens.get(hashToken(token));
    if (p === undefined) throw new UnauthenticatedError("unknown or revoked token");
    return p;
  }

  /** The principal of an HTTP request (`Authorization: Bearer <token>`), as
   * {@link authenticate}. */
  authenticateHttp(req: Request): Principal | undefined {
    const h = req.headers.get("authorization");
    if (h === null) return this.authenticate(undefined);
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (m === null) {
      if (this.#tokens === undefined) return OPEN_PRINCIPAL;
      throw new UnauthenticatedError("the Authorization header must be `Bearer <token>`");
    }
    return this.authenticate(m[1]);
  }

  /** Reads the tokens file again (SIGHUP). A broken file keeps the tokens in force and is
   * reported (logged and rethrown). */
  async reload(): Promise<void> {
    if (this.#file === "") return;
    try {
      this.#tokens = await readTokens(this.#file);
      this.#log?.info("tokens reloaded", { file: this.#file, tokens: this.#tokens.size });
    } catch (e) {
      this.#log?.error("tokens file not reloaded; the previous tokens stay in force", {
        file: this.#file,
        error: (e as Error).message,
      });
      throw e;
    }
  }
}

async function readTokens(file: string): Promise<Map<string, Principal>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new TokensFileError(file, `cannot read: ${(e as Error).message}`);
  }
  return parseTokens(text, file);
}
