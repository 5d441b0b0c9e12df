/**
 * The HTTP API (served on the node's `http` address through server/http_listener.ts):
 *
 * | Method and path                 | Meaning                                                    |
 * |---------------------------------|------------------------------------------------------------|
 * | `PUT /v1/kv/{key}`              | body = the value: raw bytes (any content type but JSON); `?ttl=30s` expires it |
 * | `GET /v1/kv/{key}`              | the value as raw bytes (versionstamp in `x-gokv-versionstamp`); `?consistency=serializable` |
 * | `DELETE /v1/kv/{key}`           | delete                                                     |
 * | `… /v1/kv?key_b64=`             | the same three for a key given in base64url               |
 * | `GET /v1/kv?prefix=&start=&end=&limit=&cursor=&reverse=` | one page of a range read (JSON, with versionstamps) |
 * | `POST /v1/txn`                  | an atomic operation (client/txn_json.ts): checks + mutations |
 * | `GET /v1/watch?key=&prefix=&after=` | Server-Sent Events: the initial state, then every change (resumable: `Last-Event-ID`) |
 * | `GET /v1/members`               | members with addresses                                     |
 * | `POST /v1/members`              | add: `{"id", "peer", "client", "http"}`                    |
 * | `DELETE /v1/members/{id}`       | remove                                                     |
 * | `POST /v1/leader/transfer`      | `{"id": n}`                                                |
 * | `POST /v1/sessions`             | open a client session: `{"session": "<id>"}`              |
 * | `GET /v1/status`                | this node's status                                         |
 * | `GET /v1/cluster`               | every member with its status (the web console's view)      |
 * | `GET /ui`                       | the web console (server/console.ts)                        |
 * | `GET /healthz`                  | liveness                                                   |
 * | `GET /metrics`                  | Prometheus text format                                     |
 * | `GET /v1/snapshot`              | a backup file streamed from the leader (snapshot_backup.ts) |
 * | `POST /kv`, `POST /kv/...`      | KV Connect, the protocol of `Deno.openKv(url)` (kv_connect.ts) |
 *
 * Keys in the path are percent-decoded to bytes (`%FF` is the byte 0xFF); `?key_b64=` takes any
 * key in base64url. A GET answers the raw value (`application/octet-stream`) unless JSON is asked
 * for (`Accept: application/json` or `?format=json`): then `{"key", "value", "versionstamp",
 * "encoding"}` for UTF-8 text, `keyBase64` / `valueBase64` otherwise (client/txn_json.ts
 * `entryJson`); the raw answer carries the versionstamp (20 hex digits) in `x-gokv-versionstamp`
 * and the encoding in `x-gokv-encoding`. Writes answer `{"ok": true, "versionstamp"}`; `POST
 * /v1/txn` answers `{"ok": true, "versionstamp"}` or `{"ok": false, "failedChecks": [...]}` (200
 * both: a failed check is an outcome), 400 `mutation_type` for a sum/min/max on a value that is
 * not a u64. A PUT body is the value as sent, except with
 * `content-type: application/json`: then exactly `{"value": "text"}` or `{"valueBase64": "..."}`
 * (other fields are refused, never dropped). Scans answer JSON pages (`next`: the cursor);
 * `prefix_b64`, `start_b64`, `end_b64` give binary bounds. Errors are JSON `{"error": code,
 * "message": ...}` with status 400 (invalid argument), 404 (not found), 410 (`session_expired`:
 * the session is unknown or expired, nothing was applied), 503 (unavailable / not leader), 504
 * (timeout), 500 (internal).
 *
 * Writes may carry a client session for exactly-once retries: open one with `POST /v1/sessions`,
 * then send headers `x-gokv-client-id` (the session id, decimal) and `x-gokv-seq` (1, 2, ... per
 * write; resend the same pair on retry). Reusing a seq for a different write is refused (400).
 * A write without these headers is a plain proposal: applied at most once per request, so a
 * request retried after a lost answer may be applied twice.
 *
 * A follower forwards a request that needs the leader to the leader's HTTP address (once:
 * forwarded requests carry `x-gokv-forwarded`); without a known leader it answers 503 with
 * `leader` / `leaderHttp`.
 *
 * @module
 */
import {
  InvalidArgumentError,
  MutationTypeError,
  NotFoundError,
  NotLeaderError,
  PermissionDeniedError,
  SessionExpiredError,
  TimeoutError,
  UnauthenticatedError,
  UnavailableError,
  WatchCompactedError,
} from "../client/errors.ts";
import { AuthGate, type AuthOp, authorize, type KeyScope, type Principal } from "./auth.ts";
import type { ScanRange } from "../client/protocol.ts";
import { atomicScope, type KvService, watchScope, type WriteSession } from "./service.ts";
import { LimitError } from "../config/limits.ts";
import type { ByteBudget } from "../transport/listener.ts";
import type { HttpMetrics } from "./server_metrics.ts";
import type { MemberAddrs } from "./members.ts";
import { clusterView, consoleAsset } from "./console.ts";
import { encodingName, entryJson, parseDuration, parseTxnJson } from "../client/txn_json.ts";
import { parseVersionstamp, ValueEncoding, versionstampHex } from "../storage/kv_model.ts";
import type { WatchEvent, WatchPoll, WatchSelector } from "./watch.ts";
import { SlowReaderError } from "./watch_stream.ts";

/** Header marking a request forwarded by a follower. */
export const FORWARDED_HEADER = "x-gokv-forwarded";

/** Options of {@link createHttpHandler}. */
export interface HttpOptions {
  /** Metrics (rendered at /metrics; every request is observed). */
  metrics: HttpMetrics;
  /** The HTTP address of a node (for forwarding); default: the service's address book. */
  httpAddressOf?: (id: number) => string | undefined;
  /** Forward not-leader requests to the leader (default true). */
  forward?: boolean;
  /** fetch used for forwarding (tests inject one). */
  fetch?: typeof fetch;
  /** The URL scheme of the members' HTTP ports (default "http"). */
  scheme?: "http" | "https";
  /** False once the node is shutting down (healthz answers 503). */
  healthy?: () => boolean;
  /** What keeps the node from serving (a listener that cannot accept...): /healthz is 503
   * while this is not empty. */
  problems?: () => string[];
  /** Bytes all requests together may hold in bodies being read (default: unbounded). */
  budget?: ByteBudget;
  /** Called when a body over the limit is refused (metrics, tests). */
  onBodyRefused?: () => void;
  /** Largest request body (default: the service's `http_body_bytes` limit). */
  maxBodyBytes?: number;
  /** A body that sends nothing for this long is dropped (ms; default: the service's
   * `request_timeout_ms`). */
  bodyTimeoutMs?: number;
  /** The `GET /v1/snapshot` handler (server/snapshot_backup.ts); 404 without one. */
  snapshot?: (req: Request) => Promise<Response>;
  /** Tokens (default: none, every request allowed). */
  auth?: AuthGate;
  /** Host names besides IP literals and `localhost` that requests may name in `Host` (DNS
   * rebinding); undefined: no check. */
  allowedHosts?: readonly string[];
  /** Browser origins allowed by CORS (default none). */
  corsOrigins?: readonly string[];
  /** The KV Connect server (server/kv_connect.ts: `POST /`, `/kv/...`); undefined for the
   * paths it does not own. */
  kvConnect?: (req: Request, url: URL, body: Uint8Array | undefined) =>
    | Promise<Response>
    | undefined;
}

/** The header that marks a request as sent by a gokv client, not a cross-site form: a POST
 * needs it or `Authorization: Bearer` (README "Security"). The web console sends it. */
export const CLIENT_HEADER = "x-gokv-client";

/** Whether `host` (a Host header: name or IP, with an optional port) is allowed. */
export function hostAllowed(host: string | null, allowed: readonly string[]): boolean {
  if (host === null) return false;
  let name = host.trim().toLowerCase();
  const v6 = /^\[([0-9a-f:.]+)\](:\d+)?$/.exec(name);
  if (v6) return true; // an IP literal cannot be rebound
  name = name.replace(/:\d+$/, "").replace(/\.$/, "");
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return true;
  return name === "localhost" || allowed.some((a) => a.toLowerCase() === name);
}

const enc = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function b64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** A key/value as JSON: text when valid UTF-8, base64 otherwise. */
export function kvJson(key: Uint8Array, value: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    out.key = utf8.decode(key);
  } catch {
    out.keyBase64 = b64(key);
  }
  try {
    out.value = utf8.decode(value);
  } catch {
    out.valueBase64 = b64(value);
  }
  return out;
}

/** Limits on the size of what a request sent: HTTP 413 (others are 400). */
const SIZE_LIMITS = new Set(["key_bytes", "value_bytes", "http_body_bytes", "frame_bytes"]);

/** Maps an error to an HTTP JSON response. */
export function errorToHttp(e: unknown): Response {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof LimitError) {
    return json(SIZE_LIMITS.has(e.limit) ? 413 : 400, {
      error: "limit_exceeded",
      limit: e.limit,
      max: e.max,
      message,
    });
  }
  if (e instanceof NotLeaderError) {
    return json(503, { error: "not_leader", message, leader: e.leaderId });
  }
  if (e instanceof InvalidArgumentError) return json(400, { error: "invalid_argument", message });
  if (e instanceof MutationTypeError) return json(400, { error: "mutation_type", message });
  if (e instanceof WatchCompactedError) {
    return json(410, { error: "watch_compacted", oldest: e.oldest, message });
  }
  if (e instanceof NotFoundError) return json(404, { error: "not_found", message });
  if (e instanceof SessionExpiredError) return json(410, { error: "session_expired", message });
  if (e instanceof TimeoutError) return json(504, { error: "timeout", message });
  if (e instanceof UnauthenticatedError) {
    return new Response(JSON.stringify({ error: "unauthenticated", message }), {
      status: 401,
      headers: { "content-type": "application/json", "www-authenticate": 'Bearer realm="gokv"' },
    });
  }
  if (e instanceof PermissionDeniedError) {
    return json(403, { error: "permission_denied", message });
  }
  if (e instanceof UnavailableError) return json(503, { error: "unavailable", message });
  return json(500, { error: "internal", message });
}

class HttpError extends InvalidArgumentError {}

/** A body read as JSON must say so (a browser cannot send application/json cross-site without a
 * preflight). */
function needJson(req: Request): void {
  if (!isJson(req.headers.get("content-type"))) {
    throw new HttpError("the body must be JSON sent with content-type: application/json");
  }
}

function sameOrigin(origin: string, req: Request): boolean {
  try {
    return new URL(origin).host === req.headers.get("host");
  } catch {
    return false;
  }
}

const CORS_HEADERS = [
  "authorization",
  "content-type",
  "x-gokv-client",
  "x-gokv-client-id",
  "x-gokv-seq",
].join(", ");

/** Answers a CORS preflight: allowed only for the configured origins. */
function preflight(origin: string | null, cors: ReadonlySet<string>): Response {
  if (origin === null || !cors.has(origin)) {
    return json(403, {
      error: "origin_not_allowed",
      message: `CORS is not enabled for ${origin ?? "this request"} (http.cors_origins)`,
    });
  }
  return new Response(null, {
    status: 204,
    headers: {
      "access-control-allow-origin": origin,
      "access-control-allow-methods": "GET, PUT, POST, DELETE",
      "access-control-allow-headers": CORS_HEADERS,
      "access-control-max-age": "600",
      vary: "Origin",
    },
  });
}

function consistencyParam(q: URLSearchParams): boolean {
  const c = q.get("consistency");
  if (c === null || c === "" || c === "linearizable") return true;
  if (c === "serializable") return false;
  throw new HttpError(`consistency must be linearizable or serializable, not "${c}"`);
}

/** A key from the path: percent-decoded to bytes (so `%FF` is the byte 0xFF; other characters
 * are their UTF-8). */
function keyFromPath(rest: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i];
    if (c === "%") {
      const h = rest.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) throw new HttpError("malformed percent-encoding in key");
      out.push(parseInt(h, 16));
      i += 2;
    } else {
      for (const b of enc.encode(c)) out.push(b);
    }
  }
  if (out.length === 0) throw new HttpError("empty key");
  return new Uint8Array(out);
}

/** The key's JSON fields: `key` when UTF-8 text, `keyBase64` otherwise. */
function keyJson(key: Uint8Array): Record<string, string> {
  try {
    return { key: utf8.decode(key) };
  } catch {
    return { keyBase64: b64(key) };
  }
}

function isJson(contentType: string | null): boolean {
  return contentType !== null && /^application\/json\b/i.test(contentType.trim());
}

/** A GET answers JSON only when asked: `?format=json` or an Accept naming application/json. */
function wantsJson(req: Request, q: URLSearchParams): boolean {
  const f = q.get("format");
  if (f !== null && f !== "json" && f !== "raw") {
    throw new HttpError(`format must be json or raw, not "${f}"`);
  }
  if (f !== null) return f === "json";
  return /application\/json/i.test(req.headers.get("accept") ?? "");
}

/** The value of a JSON PUT body: exactly `{"value": "text"}` or `{"valueBase64": "..."}`; any
 * other field is refused, never dropped. */
function jsonValue(raw: Uint8Array): Uint8Array {
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    throw new HttpError("invalid JSON body");
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
    throw new HttpError("the JSON body must be an object");
  }
  const fields = Object.keys(obj);
  const extra = fields.filter((f) => f !== "value" && f !== "valueBase64");
  if (extra.length > 0) {
    throw new HttpError(`unknown field(s) in the JSON body: ${extra.join(", ")}`);
  }
  const o = obj as { value?: unknown; valueBase64?: unknown };
  if (fields.length !== 1) throw new HttpError('the JSON body needs one of "value", "valueBase64"');
  if (typeof o.value === "string") return enc.encode(o.value);
  if (typeof o.valueBase64 === "string") return fromBase64Url(o.valueBase64, "valueBase64");
  throw new HttpError(`"${fields[0]}" must be a string`);
}

async function readJson(req: Request): Promise<Record<string, unknown>> {
  try {
    const v = await req.json();
    if (v && typeof v === "object" && !Array.isArray(v)) return v;
  } catch { /* fall through */ }
  throw new HttpError("the body must be a JSON object");
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new HttpError(`${name} must be a non-negative integer`);
  }
  return n;
}

/** Header carrying the client id of an exactly-once write (decimal u64). */
export const CLIENT_ID_HEADER = "x-gokv-client-id";
/** Header carrying the sequence number of an exactly-once write (decimal, from 1). */
export const SEQ_HEADER = "x-gokv-seq";

/** The optional client session of a write request (both headers, or none). */
function sessionOf(req: Request): WriteSession | undefined {
  const id = req.headers.get(CLIENT_ID_HEADER);
  const seq = req.headers.get(SEQ_HEADER);
  if (id === null && seq === null) return undefined;
  if (id === null || seq === null) {
    throw new HttpError(`${CLIENT_ID_HEADER} and ${SEQ_HEADER} go together`);
  }
  let clientId: bigint;
  try {
    clientId = BigInt(id);
  } catch {
    throw new HttpError(`${CLIENT_ID_HEADER} must be a decimal integer`);
  }
  const n = Number(seq);
  if (clientId <= 0n || clientId >= 1n << 64n || !Number.isSafeInteger(n) || n < 1) {
    throw new HttpError(`bad ${CLIENT_ID_HEADER} / ${SEQ_HEADER}`);
  }
  return { clientId, seq: n };
}

function nodeIdOf(v: unknown): number {
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 0x7fffffff) {
    throw new HttpError(`"${v}" is not a node id`);
  }
  return n;
}

/** The shortest wait of a `GET /v1/watch` poll for a commit before a keepalive (`wait_ms`). */
const SSE_MIN_WAIT_MS = 100;

/** One Server-Sent Event: its id is the versionstamp (so `Last-Event-ID` resumes after it). */
export function watchEventText(event: string, versionstamp: Uint8Array, data: unknown): string {
  return `id: ${versionstampHex(versionstamp)}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function changeText(e: WatchEvent): string {
  return watchEventText("change", e.versionstamp, {
    versionstamp: versionstampHex(e.versionstamp),
    changes: e.changes.map((c) => entryJson(c.key, c.entry)),
  });
}

/** Creates the request handler for Deno.serve. */
export function createHttpHandler(
  service: KvService,
  opts: HttpOptions,
): (req: Request) => Promise<Response> {
  const auth = opts.auth ?? AuthGate.none();
  const cors = new Set(opts.corsOrigins ?? []);
  const doFetch = opts.fetch ?? fetch;
  const scheme = opts.scheme ?? "http";
  const forward = opts.forward ?? true;
  const maxBody = opts.maxBodyBytes ?? service.limits.httpBodyBytes;
  const bodyTimeoutMs = opts.bodyTimeoutMs ?? service.limits.requestTimeoutMs;

  /** `GET /v1/watch` as Server-Sent Events (see {@link watchEventText}). */
  const watchSse = async (
    req: Request,
    q: URLSearchParams,
    may: (op: AuthOp, scope?: KeyScope) => void,
  ): Promise<Response> => {
    const sel: WatchSelector = { keys: [], prefixes: [] };
    for (const [name, list] of [["key", sel.keys], ["prefix", sel.prefixes]] as const) {
      for (const v of q.getAll(name)) list.push(enc.encode(v));
      for (const v of q.getAll(`${name}_b64`)) list.push(fromBase64Url(v, `${name}_b64`));
    }
    const afterText = req.headers.get("last-event-id") ?? q.get("after");
    let after: Uint8Array | undefined;
    if (afterText !== null && afterText !== "") {
      try {
        after = parseVersionstamp(afterText);
      } catch (e) {
        throw new HttpError(`after / Last-Event-ID: ${(e as Error).message}`);
      }
    }
    may("watch", watchScope(sel));
    // Between keepalives; at least SSE_MIN_WAIT_MS: with 0, every poll answered at once without
    // a timer, so the stream's loop ran on microtasks only and held the event loop (no Raft
    // tick, no other request) while it queued keepalives without bound.
    const waitMs = Math.max(SSE_MIN_WAIT_MS, intParam(q, "wait_ms") ?? 15_000);
    // The first poll answers before the stream starts: a bad selection or a compacted history
    // is an HTTP error, not a broken stream.
    const first = await service.watchPoll(sel, { after, waitMs: 0 });
    // Bounded (server/watch_stream.ts): each poll and each event waits for room in the stream's
    // queue; a reader that takes nothing meanwhile for the stall time ends it (watch_slow_reader).
    const out = service.watchStreams.stream();
    const { signal } = out;
    const send = (text: string) => out.send(enc.encode(text));
    /** Sends a poll's answer, an event at a time as the queue has room; its position. */
    const emit = async (p: WatchPoll) => {
      if (p.initial) {
        send(watchEventText("initial", p.initial.versionstamp, {
          versionstamp: versionstampHex(p.initial.versionstamp),
          entries: p.initial.entries.map((c) => entryJson(c.key, c.entry)),
        }));
      }
      for (const e of p.events) {
        if (!out.hasRoom) await out.room();
        if (signal.aborted) break;
        send(changeText(e));
      }
      return p.position;
    };
    (async () => {
      try {
        let position = await emit(first);
        while (!signal.aborted) {
          await out.room();
          if (signal.aborted) break;
          const p = await service.watchPoll(sel, { after: position, waitMs, signal });
          if (p.events.length === 0 && !signal.aborted) send(": keepalive\n\n");
          position = await emit(p);
        }
      } catch (e) {
        if (!signal.aborted) {
          const body = e instanceof WatchCompactedError
            ? { error: "watch_compacted", oldest: e.oldest, message: e.message }
            : e instanceof SlowReaderError
            ? {
              error: "watch_slow_reader",
              limit: "send_buffer_bytes",
              max: e.maxBytes,
              message: e.message,
            }
            : { error: "unavailable", message: (e as Error).message };
          out.end(enc.encode(`event: error\ndata: ${JSON.stringify(body)}\n\n`));
        }
      }
      out.end();
    })();
    return new Response(out.readable, {
      status: 200,
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-gokv-watch-floor": versionstampHex(service.watchHub.floor),
      },
    });
  };

  const route = async (
    req: Request,
    url: URL,
    body: Uint8Array<ArrayBuffer> | undefined,
    principal: Principal | undefined,
  ): Promise<Response> => {
    const path = url.pathname;
    const q = url.searchParams;
    const m = req.method;
    const may = (op: AuthOp, scope?: KeyScope) => authorize(principal, op, scope);
    const kv = opts.kvConnect?.(req, url, body);
    if (kv) return await kv;
    const single = path.startsWith("/v1/kv/") && path.length > "/v1/kv/".length;
    const byB64 = (path === "/v1/kv" || path === "/v1/kv/") && q.has("key_b64");
    if (single || byB64) {
      const key = byB64
        ? fromBase64Url(q.get("key_b64")!, "key_b64")
        : keyFromPath(path.slice("/v1/kv/".length));
      if (key.length === 0) throw new HttpError("empty key");
      if (m === "GET") {
        may("get", key);
        const asJson = wantsJson(req, q);
        const { entries: [e] } = await service.getMany([key], {
          consistency: consistencyParam(q) ? "strong" : "eventual",
        });
        if (!e) {
          return json(404, {
            error: "not_found",
            message: "key not found",
            ...keyJson(key),
            ...(asJson ? { value: null, versionstamp: null } : {}),
          });
        }
        // Raw bytes by default; JSON (text or base64 fields) only when asked for.
        if (asJson) return json(200, entryJson(key, e));
        return new Response(e.value as Uint8Array<ArrayBuffer>, {
          status: 200,
          headers: {
            "content-type": "application/octet-stream",
            "x-gokv-versionstamp": versionstampHex(e.versionstamp),
            "x-gokv-encoding": encodingName(e.encoding),
          },
        });
      }
      if (m === "PUT" || m === "POST") {
        may("put", key);
        const raw = body ?? new Uint8Array();
        const value = isJson(req.headers.get("content-type")) ? jsonValue(raw) : raw;
        const ttl = q.get("ttl");
        if (ttl !== null) {
          const r = await service.atomic({
            checks: [],
            mutations: [{
              type: "set",
              key,
              value,
              encoding: ValueEncoding.BYTES,
              expireAt: Date.now() + parseDuration(ttl),
            }],
          }, { session: sessionOf(req) });
          return json(200, {
            ok: true,
            versionstamp: r.ok ? versionstampHex(r.versionstamp) : null,
          });
        }
        const vs = await service.put(key, value, sessionOf(req));
        return json(200, { ok: true, versionstamp: vs ? versionstampHex(vs) : null });
      }
      if (m === "DELETE") {
        may("delete", key);
        const vs = await service.delete(key, sessionOf(req));
        return json(200, { ok: true, versionstamp: vs ? versionstampHex(vs) : null });
      }
      return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
    }
    if (path === "/v1/kv" || path === "/v1/kv/") {
      if (m !== "GET") return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
      const range: ScanRange = {};
      for (const k of ["prefix", "start", "end"] as const) {
        const v = q.get(k);
        const b = q.get(`${k}_b64`);
        if (v !== null && b !== null) throw new HttpError(`give ${k} or ${k}_b64, not both`);
        if (v !== null) range[k] = enc.encode(v);
        if (b !== null) range[k] = fromBase64Url(b, `${k}_b64`);
      }
      const limit = intParam(q, "limit");
      if (limit) range.limit = limit;
      const cursor = q.get("cursor");
      if (cursor) range.cursor = fromBase64Url(cursor, "cursor");
      may("scan", range);
      const reverse = q.get("reverse");
      if (reverse !== null && reverse !== "true" && reverse !== "false") {
        throw new HttpError("reverse must be true or false");
      }
      const page = await service.range({
        ...range,
        reverse: reverse === "true",
        consistency: consistencyParam(q) ? "strong" : "eventual",
      });
      const out: Record<string, unknown> = {
        count: page.entries.length,
        kvs: page.entries.map((e) => ({
          ...kvJson(e.key, e.value),
          versionstamp: versionstampHex(e.versionstamp),
          encoding: encodingName(e.encoding),
          ...(e.expireAt !== undefined ? { expireAt: e.expireAt } : {}),
        })),
      };
      if (page.cursor) out.next = toBase64Url(page.cursor);
      return json(200, out);
    }
    if (path === "/v1/watch") {
      if (m !== "GET") return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
      return await watchSse(req, q, may);
    }
    if (path === "/v1/txn") {
      if (m !== "POST") return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder().decode(body ?? new Uint8Array()));
      } catch {
        throw new HttpError("the body must be a JSON transaction (client/txn_json.ts)");
      }
      const op = parseTxnJson(parsed);
      may("txn", atomicScope(op));
      const r = await service.atomic(op, { session: sessionOf(req) });
      return json(
        200,
        r.ok
          ? { ok: true, versionstamp: versionstampHex(r.versionstamp) }
          : { ok: false, failedChecks: r.failedChecks },
      );
    }
    if (path === "/v1/members") {
      if (m === "GET") {
        may("members");
        return json(200, { leader: service.leaderId(), members: service.members() });
      }
      if (m === "POST") {
        may("member_change");
        needJson(req);
        const o = body ? JSON.parse(new TextDecoder().decode(body)) : await readJson(req);
        if (!o || typeof o !== "object") throw new HttpError("the body must be a JSON object");
        const member: MemberAddrs = {
          id: nodeIdOf(o.id),
          peer: String(o.peer ?? ""),
          client: String(o.client ?? ""),
          http: String(o.http ?? ""),
        };
        await service.addMember(member);
        return json(200, { ok: true, member });
      }
      return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
    }
    if (path.startsWith("/v1/members/")) {
      if (m !== "DELETE") {
        return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
      }
      may("member_change");
      const id = nodeIdOf(path.slice("/v1/members/".length));
      await service.removeMember(id);
      return json(200, { ok: true });
    }
    if (path === "/v1/leader/transfer") {
      if (m !== "POST") return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
      may("transfer");
      let id: number;
      if (q.has("id")) {
        id = nodeIdOf(q.get("id"));
      } else {
        needJson(req);
        let o: Record<string, unknown>;
        try {
          o = JSON.parse(new TextDecoder().decode(body ?? new Uint8Array()));
        } catch {
          throw new HttpError('the body must be JSON {"id": n}');
        }
        id = nodeIdOf(o?.id);
      }
      await service.transferLeader(id);
      return json(200, { ok: true });
    }
    if (path === "/v1/snapshot" && opts.snapshot) return await opts.snapshot(req);
    if (path === "/v1/sessions") {
      if (m !== "POST") return json(405, { error: "method_not_allowed", message: `${m} ${path}` });
      may("session");
      return json(200, { session: String(await service.registerSession()) });
    }
    if (path === "/v1/status" && m === "GET") {
      may("status");
      return json(200, service.status());
    }
    if (path === "/v1/cluster" && m === "GET") {
      may("status");
      const auth = req.headers.get("authorization");
      return json(
        200,
        await clusterView(service, {
          fetch: doFetch,
          scheme: opts.scheme,
          headers: auth ? { authorization: auth } : undefined,
        }),
      );
    }
    if (m === "GET") {
      const asset = consoleAsset(path);
      if (asset) return asset;
    }
    if (path === "/healthz" && m === "GET") {
      if (auth.protectMetrics) may("status");
      const up = opts.healthy?.() ?? true;
      const problems = opts.problems?.() ?? [];
      const ok = up && problems.length === 0;
      return json(ok ? 200 : 503, {
        status: ok ? "ok" : up ? "unhealthy" : "shutting_down",
        id: service.id,
        leader: service.leaderId(),
        ...(problems.length > 0 ? { problems } : {}),
      });
    }
    if (path === "/metrics" && m === "GET") {
      if (auth.protectMetrics) may("status");
      return new Response(await opts.metrics.scrape(), {
        headers: { "content-type": opts.metrics.contentType },
      });
    }
    return json(404, { error: "not_found", message: `no route for ${m} ${path}` });
  };

  /** Refusals before anything is read: DNS rebinding, cross-site requests, bad tokens. */
  const guard = (req: Request, url: URL): Response | Principal | undefined => {
    // HTTP/2 has no Host header: its :authority is the request URL's host (Deno's KV Connect
    // client speaks HTTP/2 with prior knowledge).
    const host = req.headers.get("host") ?? url.host;
    if (opts.allowedHosts && !hostAllowed(host, opts.allowedHosts)) {
      return json(403, {
        error: "host_not_allowed",
        message: `Host ${
          JSON.stringify(host)
        } is not a name of this cluster (add it to http.allowed_hosts)`,
      });
    }
    const m = req.method;
    const origin = req.headers.get("origin");
    const crossSite = origin !== null && !cors.has(origin) && !sameOrigin(origin, req);
    if (m !== "GET" && m !== "HEAD") {
      if (crossSite) {
        return json(403, {
          error: "origin_not_allowed",
          message: `requests from ${origin} are not allowed (http.cors_origins)`,
        });
      }
      // A POST is what a cross-site form or a no-preflight fetch can send: it must carry a
      // header no such request can (PUT and DELETE are always preflighted, CORS is off).
      if (m === "POST" && !req.headers.has("authorization") && !req.headers.has(CLIENT_HEADER)) {
        return json(403, {
          error: "missing_client_header",
          message: `a POST needs an Authorization: Bearer token or an ${CLIENT_HEADER} header`,
        });
      }
    }
    // KV Connect (/kv, /kv/...) presents its own bearer tokens (the access token, then
    // data-path tokens): its handler authenticates them and calls authorize() itself.
    const path = url.pathname;
    if (path === "/kv" || path.startsWith("/kv/")) return undefined;
    // `Deno.openKv("http://host:port")` posts its metadata exchange to the root.
    if (path === "/" && req.method === "POST") return undefined;
    try {
      return auth.authenticateHttp(req);
    } catch (e) {
      return errorToHttp(e);
    }
  };

  const handle = async (req: Request, url: URL): Promise<Response> => {
    const origin = req.headers.get("origin");
    if (req.method === "OPTIONS") return preflight(origin, cors);
    const g = guard(req, url);
    if (g instanceof Response) {
      await req.body?.cancel().catch(() => {});
      return g;
    }
    const res = await serve(req, url, g);
    if (origin !== null && cors.has(origin)) {
      const headers = new Headers(res.headers);
      headers.set("access-control-allow-origin", origin);
      headers.append("vary", "Origin");
      return new Response(res.body, { status: res.status, headers });
    }
    return res;
  };

  const serve = async (
    req: Request,
    url: URL,
    principal: Principal | undefined,
  ): Promise<Response> => {
    let body: Uint8Array<ArrayBuffer> | undefined;
    if (req.body && (req.method === "PUT" || req.method === "POST")) {
      try {
        body = await readBody(req, maxBody, bodyTimeoutMs, opts.budget);
      } catch (e) {
        if (e instanceof BusyError) {
          return new Response(
            JSON.stringify({ error: "unavailable", message: e.message }),
            {
              status: 503,
              headers: { "content-type": "application/json", connection: "close" },
            },
          );
        }
        if (e instanceof LimitError) {
          opts.onBodyRefused?.();
          return new Response(errorToHttp(e).body, {
            status: 413,
            // The rest of the body is not read: close the connection instead.
            headers: { "content-type": "application/json", connection: "close" },
          });
        }
        return new Response(
          JSON.stringify({
            error: "invalid_argument",
            message: `cannot read the request body: ${(e as Error).message}`,
          }),
          { status: 400, headers: { "content-type": "application/json", connection: "close" } },
        );
      }
    }
    try {
      return await route(req, url, body, principal);
    } catch (e) {
      if (e instanceof SyntaxError) {
        return json(400, { error: "invalid_argument", message: e.message });
      }
      if (e instanceof NotLeaderError && forward && !req.headers.has(FORWARDED_HEADER)) {
        const addr = e.leaderId
          ? (opts.httpAddressOf?.(e.leaderId) ?? service.leaderAddrs()?.http)
          : undefined;
        if (addr) {
          try {
            const headers = new Headers(req.headers);
            headers.set(FORWARDED_HEADER, String(service.id));
            headers.delete("host");
            headers.delete("origin"); // vetted here; the leader sees a node-to-node request
            headers.delete("content-length");
            const res = await doFetch(`${scheme}://${addr}${url.pathname}${url.search}`, {
              method: req.method,
              headers,
              body: body && body.length > 0 ? body : undefined,
              signal: AbortSignal.timeout(10_000),
            });
            const out = new Uint8Array(await res.arrayBuffer());
            return new Response(out, { status: res.status, headers: res.headers });
          } catch (fe) {
            return json(503, {
              error: "unavailable",
              message: `forwarding to leader ${e.leaderId} at ${addr} failed: ${
                (fe as Error).message
              }`,
              leader: e.leaderId,
              leaderHttp: addr,
            });
          }
        }
        return json(503, { error: "not_leader", message: e.message, leader: e.leaderId });
      }
      if (e instanceof NotLeaderError) {
        const addr = e.leaderId ? opts.httpAddressOf?.(e.leaderId) : undefined;
        return json(503, {
          error: "not_leader",
          message: e.message,
          leader: e.leaderId,
          leaderHttp: addr ?? "",
        });
      }
      return errorToHttp(e);
    }
  };

  // Every request is counted and timed (until its response headers) by method, route, status.
  return async (req: Request): Promise<Response> => {
    const t0 = performance.now();
    const url = new URL(req.url);
    let status = 500;
    try {
      const res = await handle(req, url);
      status = res.status;
      return res;
    } finally {
      opts.metrics.observeHttp(req.method, url.pathname, status, (performance.now() - t0) / 1000);
    }
  };
}

/**
 * Reads a request body of at most `max` bytes as it streams in (a declared Content-Length over
 * the limit is refused before reading; a chunked body as soon as it crosses it), and gives up
 * when no bytes arrive for `stallMs`. Throws {@link LimitError} (`http_body_bytes`) or an Error.
 */
export async function readBody(
  req: Request,
  max: number,
  stallMs: number,
  budget?: ByteBudget,
): Promise<Uint8Array<ArrayBuffer>> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > max) {
    await req.body?.cancel().catch(() => {});
    throw new LimitError("http_body_bytes", max, Number(declared));
  }
  const small = declared !== null ? Number(declared) : NaN;
  if (Number.isSafeInteger(small) && small >= 0 && small <= SMALL_BODY_BYTES) {
    return await readSmallBody(req, small, max, stallMs, budget);
  }
  const reader = req.body!.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  let taken = 0;
  try {
    while (true) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`body stalled for ${stallMs} ms`)), stallMs);
      });
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await Promise.race([reader.read(), stalled]);
      } finally {
        clearTimeout(timer);
      }
      if (r.done) break;
      total += r.value.length;
      if (total > max) throw new LimitError("http_body_bytes", max, total);
      if (budget) {
        if (!budget.tryTake(r.value.length)) {
          throw new BusyError(`the node holds ${budget.max} bytes of request bodies; retry`);
        }
        taken += r.value.length;
      }
      chunks.push(r.value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  } finally {
    // The bytes are copied into one array below; the budget bounds bodies being received.
    budget?.release(taken);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Bodies up to this declared size are read in one piece (one timer, no per-chunk reads). */
const SMALL_BODY_BYTES = 64 * 1024;

/** {@link readBody} of a body that declares a small Content-Length: read whole within
 * `stallMs` (as a small body always arrives well within it unless it stalls). */
async function readSmallBody(
  req: Request,
  declared: number,
  max: number,
  stallMs: number,
  budget?: ByteBudget,
): Promise<Uint8Array<ArrayBuffer>> {
  if (budget && !budget.tryTake(declared)) {
    await req.body?.cancel().catch(() => {});
    throw new BusyError(`the node holds ${budget.max} bytes of request bodies; retry`);
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`body stalled for ${stallMs} ms`)), stallMs);
    });
    const body = await Promise.race([req.bytes(), stalled]);
    if (body.length > max) throw new LimitError("http_body_bytes", max, body.length);
    return body as Uint8Array<ArrayBuffer>;
  } catch (e) {
    req.body?.cancel().catch(() => {});
    throw e;
  } finally {
    clearTimeout(timer);
    budget?.release(declared);
  }
}

/** Too many body bytes held by the node right now (503, retry later). */
class BusyError extends Error {}

/** Base64url without padding (scan cursors, binary keys). */
export function toBase64Url(b: Uint8Array): string {
  return b64(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decodes base64url (or base64); a malformed string is an invalid argument naming `what`. */
export function fromBase64Url(s: string, what: string): Uint8Array {
  try {
    const std = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    throw new HttpError(`${what} is not base64url`);
  }
}
