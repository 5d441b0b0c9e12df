/**
 * Who may use the KV Connect server (server/kv_connect.ts), in two steps as the protocol has
 * them:
 *
 * 1. The metadata exchange presents an access token (`DENO_KV_ACCESS_TOKEN`). An
 *    {@link AccessCheck} maps it to a role or refuses it. Today the node's configured
 *    `kv_connect.access_token` grants `readwrite` ({@link staticAccessCheck}); the security
 *    issue's bearer tokens plug in here as another AccessCheck (a read-only role may only
 *    `snapshot_read` and `watch`).
 * 2. The exchange answers a short-lived data-path token ({@link DataPathTokens}): the database
 *    id, the role and the expiry, signed with HMAC-SHA256 under a key every node derives from the
 *    same secret, so any node (a follower forwarding a write to the leader, another node's
 *    eventual endpoint) verifies a token another node issued.
 *
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { fromBase64Url as fromB64url, toBase64Url as b64url } from "../storage/bytes.ts";

/** What a token allows: `read` (snapshot_read, watch) or `readwrite` (also atomic_write). */
export type KvRole = "read" | "readwrite";

/** Maps a metadata-exchange access token to its role; undefined refuses it. */
export type AccessCheck = (token: string) => KvRole | undefined;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The configured token grants `readwrite` (compared in constant time); an empty configured
 * token refuses everything. */
export function staticAccessCheck(configured: string): AccessCheck {
  const want = new TextEncoder().encode(configured);
  return (token) => {
    if (configured === "") return undefined;
    return sameBytes(new TextEncoder().encode(token), want) ? "readwrite" : undefined;
  };
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
  /** What it allows. */
  role: KvRole;
  /** When it stops being valid (ms since the epoch). */
  expiresAt: number;
}

/** Verified tokens a node remembers. */
const VERIFIED_TOKENS = 1024;

/**
 * Issues and verifies data-path tokens: `gkv1.<payload>.<mac>` where the payload is the JSON
 * `{"db", "role", "exp"}` and the mac HMAC-SHA256 of the payload.
 */
export class DataPathTokens {
  readonly #key: Uint8Array;
  /** Tokens whose signature was checked (most recent last; every request re-checks expiry and
   * database), so a request costs no HMAC. */
  readonly #verified = new Map<string, DataPathGrant>();
  /** Creates the issuer from a secret shared by every node (the configured access token);
   * tokens last `ttlMs`. */
  constructor(secret: string, readonly ttlMs: number, private readonly now = Date.now) {
    this.#key = createHash("sha256").update("gokv kv-connect data-path token\0").update(secret)
      .digest();
  }

  #mac(payload: string): Uint8Array {
    return createHmac("sha256", this.#key).update(payload).digest();
  }

  /** A token for `databaseId` with `role`, valid for the TTL from now. */
  issue(databaseId: string, role: KvRole): { token: string; expiresAt: number } {
    const expiresAt = this.now() + this.ttlMs;
    const payload = b64url(
      new TextEncoder().encode(JSON.stringify({ db: databaseId, role, exp: expiresAt })),
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
    let grant: { db?: unknown; role?: unknown; exp?: unknown };
    try {
      mac = fromB64url(parts[2]);
      if (!sameBytes(mac, this.#mac(parts[1]))) throw new TokenError("bad mac");
      grant = JSON.parse(new TextDecoder().decode(fromB64url(parts[1])));
    } catch {
      throw new TokenError("Invalid access token.");
    }
    if (
      typeof grant.db !== "string" || typeof grant.exp !== "number" ||
      (grant.role !== "read" && grant.role !== "readwrite")
    ) {
      throw new TokenError("Invalid access token.");
    }
    return { databaseId: grant.db, role: grant.role, expiresAt: grant.exp };
  }
}
