/**
 * Who may use the KV Connect server (server/kv_connect.ts), in two steps as the protocol has
 * them:
 *
 * 1. The metadata exchange presents an access token (`DENO_KV_ACCESS_TOKEN`). An
 *    {@link AccessCheck} maps it to a {@link KvSubject} (who, with which role and key prefixes)
 *    or refuses it: the node's configured `kv_connect.access_token` grants `write`
 *    ({@link staticAccessCheck}); the bearer tokens of the node's tokens file (server/auth.ts)
 *    plug in as another AccessCheck. A `read` subject may only `snapshot_read` and `watch`.
 * 2. The exchange answers a short-lived data-path token ({@link DataPathTokens}): the database
 *    id, the subject and the expiry, signed with HMAC-SHA256 under a key every node derives from
 *    the same secret, so any node (a follower forwarding a write to the leader, another node's
 *    eventual endpoint) verifies a token another node issued. Every data-path request is then
 *    authorized for its subject (server/kv_connect.ts `authorize`).
 *
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { fromBase64Url as fromB64url, toBase64Url as b64url } from "../storage/bytes.ts";
import type { Config } from "../config/config.ts";
import type { AuthGate } from "./auth.ts";

/** Who a token speaks for (the shape of server/auth.ts `Principal`): `read` may snapshot_read
 * and watch; `write` and `admin` also atomic_write; `prefixes`, when given, bound the keys. */
export interface KvSubject {
  /** The token's name. */
  name: string;
  /** Its role. */
  role: "read" | "write" | "admin";
  /** The key prefixes it may touch (absent: every key). */
  prefixes?: readonly Uint8Array[];
}

/** Maps a metadata-exchange access token to its subject; undefined refuses it. */
export type AccessCheck = (token: string) => KvSubject | undefined;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The subject of the configured `kv_connect.access_token`. */
export const ACCESS_TOKEN_SUBJECT: KvSubject = Object.freeze({
  name: "kv_connect.access_token",
  role: "write",
});

/** The configured token grants `write` on every key (compared in constant time); an empty
 * configured token refuses everything. */
export function staticAccessCheck(configured: string): AccessCheck {
  const want = new TextEncoder().encode(configured);
  return (token) => {
    if (configured === "") return undefined;
    return sameBytes(new TextEncoder().encode(token), want) ? ACCESS_TOKEN_SUBJECT : undefined;
  };
}

/**
 * The subjects of the node's configured `kv_connect.access_token` and of its tokens file
 * (server/auth.ts): a token of the file speaks for its principal (role and key prefixes).
 */
export function gateAccessCheck(gate: AuthGate, configured: string): AccessCheck {
  const own = staticAccessCheck(configured);
  return (token) => {
    const s = own(token);
    if (s || !gate.enabled) return s;
    try {
      return gate.authenticate(token);
    } catch {
      return undefined; // not a token of the file
    }
  };
}

/**
 * The secret the data-path token key is derived from, the same on every node: the configured
 * `kv_connect.access_token`, else the cluster secret (`security.peer_secret_file`), else the
 * tokens file's contents; "" when none is set (KV Connect then refuses every exchange).
 */
export async function kvConnectSecret(config: Config): Promise<string> {
  if (config.kvConnect.accessToken) return config.kvConnect.accessToken;
  for (const file of [config.security.peerSecretFile, config.security.tokensFile]) {
    if (file) return await Deno.readTextFile(file);
  }
  return "";
}

/** Why a data-path token was refused (HTTP 401). */
export class TokenError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "TokenError";
  }
}

/** What a verified data-path token says. */
export interface DataPathGrant {
  /** The database it is bound to. */
  databaseId: string;
  /** Who it speaks for. */
  subject: KvSubject;
  /** When it stops being valid (ms since the epoch). */
  expiresAt: number;
}

/** Verified tokens a node remembers. */
const VERIFIED_TOKENS = 1024;

/**
 * Issues and verifies data-path tokens: `gkv1.<payload>.<mac>` where the payload is the JSON
 * `{"db", "exp", "sub": {"n", "r", "p"?}}` (database id, expiry, subject name, role, base64url key
 * prefixes) and the mac HMAC-SHA256 of the payload.
 */
export class DataPathTokens {
  readonly #key: Uint8Array;
  /** Tokens whose signature was checked (most recent last; every request re-checks expiry and
   * database), so a request costs no HMAC. */
  readonly #verified = new Map<string, DataPathGrant>();
  /** Creates the issuer from a secret shared by every node (the configured access token);
   * tokens last `ttlMs`. */
  private readonly secretSet: boolean;
  constructor(secret: string, readonly ttlMs: number, private readonly now = Date.now) {
    this.secretSet = secret !== "";
    this.#key = createHash("sha256").update("gokv kv-connect data-path token\0").update(secret)
      .digest();
  }

  /** Whether tokens can be issued (a non-empty secret). */
  get ready(): boolean {
    return this.secretSet;
  }

  #mac(payload: string): Uint8Array {
    return createHmac("sha256", this.#key).update(payload).digest();
  }

  /** A token for `databaseId` speaking for `subject`, valid for the TTL from now. */
  issue(databaseId: string, subject: KvSubject): { token: string; expiresAt: number } {
    const expiresAt = this.now() + this.ttlMs;
    const sub: Record<string, unknown> = { n: subject.name, r: subject.role };
    if (subject.prefixes) sub.p = subject.prefixes.map(b64url);
    const payload = b64url(
      new TextEncoder().encode(JSON.stringify({ db: databaseId, exp: expiresAt, sub })),
    );
    return { token: `gkv1.${payload}.${b64url(this.#mac(payload))}`, expiresAt };
  }

  /** The grant of a token issued for `databaseId`; {@link TokenError} when forged, expired or
   * bound to another database. */
  verify(token: string, databaseId: string): DataPathGrant {
    const known = this.#verified.get(token);
    if (known) return this.#check(known, databaseId);
    const grant = this.#check(this.#parse(token), databaseId);
    if (this.#verified.size >= VERIFIED_TOKENS) {
      this.#verified.delete(this.#verified.keys().next().value!);
    }
    this.#verified.set(token, grant);
    return grant;
  }

  #check(g: DataPathGrant, databaseId: string): DataPathGrant {
    if (g.databaseId !== databaseId) {
      throw new TokenError("The access token is for another database.");
    }
    if (g.expiresAt <= this.now()) {
      throw new TokenError("The access token has expired; exchange metadata again.");
    }
    return g;
  }

  /** The grant a well-signed token carries (TokenError when forged or malformed). */
  #parse(token: string): DataPathGrant {
    const parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== "gkv1") throw new TokenError("Invalid access token.");
    let mac: Uint8Array;
    let grant: { db?: unknown; exp?: unknown; sub?: { n?: unknown; r?: unknown; p?: unknown } };
    try {
      mac = fromB64url(parts[2]);
      if (!sameBytes(mac, this.#mac(parts[1]))) throw new TokenError("bad mac");
      grant = JSON.parse(new TextDecoder().decode(fromB64url(parts[1])));
    } catch {
      throw new TokenError("Invalid access token.");
    }
    const sub = grant.sub;
    if (
      typeof grant.db !== "string" || typeof grant.exp !== "number" || !sub ||
      typeof sub.n !== "string" || (sub.r !== "read" && sub.r !== "write" && sub.r !== "admin") ||
      (sub.p !== undefined && !(Array.isArray(sub.p) && sub.p.every((x) => typeof x === "string")))
    ) {
      throw new TokenError("Invalid access token.");
    }
    const subject: KvSubject = { name: sub.n, role: sub.r };
    if (sub.p) subject.prefixes = (sub.p as string[]).map(fromB64url);
    return { databaseId: grant.db, subject, expiresAt: grant.exp };
  }
}
