/**
 * The JSON form of an atomic operation, shared by `POST /v1/txn` and `gokv txn`:
 *
 * ```json
 * {
 *   "checks": [{ "key": "a", "versionstamp": "00000000000000070000" }, { "key": "b", "versionstamp": null }],
 *   "mutations": [
 *     { "type": "set", "key": "a", "value": "text", "expireIn": 30000 },
 *     { "type": "set", "keyBase64": "AAE", "valueBase64": "/w==", "encoding": "bytes" },
 *     { "type": "delete", "key": "b" },
 *     { "type": "sum", "key": "n", "value": "1", "max": "100", "clamp": true },
 *     { "type": "min", "key": "lo", "value": 3 },
 *     { "type": "setVersionstampedKey", "key": "queue/", "value": "job" }
 *   ]
 * }
 * ```
 *
 * Keys and values are UTF-8 text (`key`, `value`) or base64/base64url (`keyBase64`,
 * `valueBase64`); a versionstamp is 20 hex digits, null for "the key must be missing"; sum, min
 * and max take a u64 as a decimal string or a safe integer; `encoding` is `bytes` (default),
 * `u64` (the value is then a decimal u64) or `v8`; `expireIn` (ms from now) or `expireAt` (ms
 * since the epoch). Unknown fields are refused, never dropped.
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";
import {
  type AtomicCheck,
  type AtomicMutation,
  type AtomicOperation,
  type KvEntry,
  parseVersionstamp,
  readU64le,
  u64le,
  ValueEncoding,
  versionstampHex,
} from "../storage/kv_model.ts";
import { fromBase64Url, toBase64 } from "../storage/bytes.ts";

const enc = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

const ENCODINGS: Record<string, ValueEncoding> = {
  bytes: ValueEncoding.BYTES,
  u64: ValueEncoding.LE64,
  v8: ValueEncoding.V8,
};

/** The name of an encoding in JSON. */
export function encodingName(e: ValueEncoding): string {
  return e === ValueEncoding.LE64 ? "u64" : e === ValueEncoding.V8 ? "v8" : "bytes";
}

function bad(msg: string): never {
  throw new InvalidArgumentError(msg);
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (!v || typeof v !== "object" || Array.isArray(v)) bad(`${what} must be a JSON object`);
  return v as Record<string, unknown>;
}

function only(o: Record<string, unknown>, allowed: string[], what: string): void {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length > 0) bad(`${what}: unknown field(s) ${extra.join(", ")}`);
}

function b64(s: string, what: string): Uint8Array {
  try {
    return fromBase64Url(s);
  } catch {
    return bad(`${what} is not base64`);
  }
}

function bytesField(o: Record<string, unknown>, name: string, what: string): Uint8Array {
  const t = o[name];
  const b = o[`${name}Base64`];
  if (t !== undefined && b !== undefined) bad(`${what}: give ${name} or ${name}Base64, not both`);
  if (typeof t === "string") return enc.encode(t);
  if (typeof b === "string") return b64(b, `${what}: ${name}Base64`);
  return bad(`${what}: ${name} (a string) or ${name}Base64 is required`);
}

/** A u64 from a decimal string or a safe integer. */
export function parseU64(v: unknown, what: string): bigint {
  let n: bigint;
  if (typeof v === "number" && Number.isSafeInteger(v)) n = BigInt(v);
  else if (typeof v === "string" && /^\d+$/.test(v)) n = BigInt(v);
  else return bad(`${what} must be a u64 (a decimal string or an integer)`);
  if (n >= 1n << 64n) bad(`${what} exceeds 2^64 - 1`);
  return n;
}

function expiry(o: Record<string, unknown>, what: string, now: number): number | undefined {
  if (o.expireIn !== undefined && o.expireAt !== undefined) {
    bad(`${what}: give expireIn or expireAt, not both`);
  }
  for (const f of ["expireIn", "expireAt"]) {
    const v = o[f];
    if (v !== undefined && (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)) {
      bad(`${what}: ${f} must be a non-negative integer (ms)`);
    }
  }
  if (typeof o.expireIn === "number") return now + o.expireIn;
  if (typeof o.expireAt === "number") return o.expireAt;
  return undefined;
}

/** Parses the JSON form (see the module documentation); `now` dates `expireIn`. Throws
 * {@link InvalidArgumentError}. */
export function parseTxnJson(json: unknown, now = Date.now()): AtomicOperation {
  const root = obj(json, "the transaction");
  only(root, ["checks", "mutations"], "the transaction");
  const rawChecks = root.checks ?? [];
  const rawMutations = root.mutations ?? [];
  if (!Array.isArray(rawChecks)) bad("checks must be an array");
  if (!Array.isArray(rawMutations)) bad("mutations must be an array");
  const checks: AtomicCheck[] = rawChecks.map((c, i) => {
    const what = `check ${i}`;
    const o = obj(c, what);
    only(o, ["key", "keyBase64", "versionstamp"], what);
    const key = bytesField(o, "key", what);
    if (o.versionstamp !== null && typeof o.versionstamp !== "string") {
      bad(`${what}: versionstamp must be 20 hex digits or null`);
    }
    let versionstamp: Uint8Array | null = null;
    if (typeof o.versionstamp === "string") {
      try {
        versionstamp = parseVersionstamp(o.versionstamp);
      } catch (e) {
        bad(`${what}: ${(e as Error).message}`);
      }
    }
    return { key, versionstamp };
  });
  const mutations: AtomicMutation[] = rawMutations.map((m, i) => {
    const o = obj(m, `mutation ${i}`);
    const type = o.type;
    const what = `mutation ${i} (${String(type)})`;
    switch (type) {
      case "set":
      case "setVersionstampedKey": {
        only(o, [
          "type",
          "key",
          "keyBase64",
          "value",
          "valueBase64",
          "encoding",
          "expireIn",
          "expireAt",
        ], what);
        const key = bytesField(o, "key", what);
        const name = o.encoding ?? "bytes";
        const encoding = typeof name === "string" ? ENCODINGS[name] : undefined;
        if (encoding === undefined) bad(`${what}: encoding must be bytes, u64 or v8`);
        const value = encoding === ValueEncoding.LE64 && o.valueBase64 === undefined
          ? u64le(parseU64(o.value, `${what}: value`))
          : bytesField(o, "value", what);
        const at = expiry(o, what, now);
        return {
          type: type === "set" ? "set" : "setSuffixVersionstampedKey",
          key,
          value,
          encoding,
          ...(at !== undefined ? { expireAt: at } : {}),
        };
      }
      case "delete":
        only(o, ["type", "key", "keyBase64"], what);
        return { type, key: bytesField(o, "key", what) };
      case "sum": {
        only(o, ["type", "key", "keyBase64", "value", "min", "max", "clamp"], what);
        const out: Extract<AtomicMutation, { type: "sum" }> = {
          type,
          key: bytesField(o, "key", what),
          value: u64le(parseU64(o.value, `${what}: value`)),
        };
        if (o.min !== undefined) out.min = u64le(parseU64(o.min, `${what}: min`));
        if (o.max !== undefined) out.max = u64le(parseU64(o.max, `${what}: max`));
        if (o.clamp !== undefined && typeof o.clamp !== "boolean") {
          bad(`${what}: clamp must be true or false`);
        }
        if (o.clamp) out.clamp = true;
        return out;
      }
      case "min":
      case "max":
        only(o, ["type", "key", "keyBase64", "value"], what);
        return {
          type,
          key: bytesField(o, "key", what),
          value: u64le(parseU64(o.value, `${what}: value`)),
        };
      default:
        return bad(
          `mutation ${i}: type must be set, delete, sum, min, max or setVersionstampedKey`,
        );
    }
  });
  return { checks, mutations };
}

/** An entry as JSON: `key` / `keyBase64`, `value` (text; a decimal string for u64 values) or
 * `valueBase64`, `versionstamp` (hex), `encoding`, `expireAt`. A missing key (null entry) is
 * `{ key, value: null, versionstamp: null }`. */
export function entryJson(key: Uint8Array, e: KvEntry | null): Record<string, unknown> {
  const out: Record<string, unknown> = textOrBase64("key", key);
  if (!e) return { ...out, value: null, versionstamp: null };
  if (e.encoding === ValueEncoding.LE64 && e.value.length === 8) {
    out.value = String(readU64le(e.value));
  } else if (e.encoding === ValueEncoding.BYTES) {
    Object.assign(out, textOrBase64("value", e.value));
  } else {
    out.valueBase64 = toBase64(e.value);
  }
  out.versionstamp = versionstampHex(e.versionstamp);
  out.encoding = encodingName(e.encoding);
  if (e.expireAt !== undefined) out.expireAt = e.expireAt;
  return out;
}

/** {@link entryJson} of an entry as the client library reads it (versionstamp as hex; a missing
 * key has value and versionstamp null). */
export function clientEntryJson(e: {
  key: Uint8Array;
  value: Uint8Array | null;
  versionstamp: string | null;
  encoding?: ValueEncoding;
  expireAt?: number;
}): Record<string, unknown> {
  if (e.value === null || e.versionstamp === null) return entryJson(e.key, null);
  return entryJson(e.key, {
    key: e.key,
    value: e.value,
    encoding: e.encoding ?? ValueEncoding.BYTES,
    versionstamp: parseVersionstamp(e.versionstamp),
    ...(e.expireAt !== undefined ? { expireAt: e.expireAt } : {}),
  });
}

function textOrBase64(name: string, b: Uint8Array): Record<string, string> {
  try {
    return { [name]: utf8.decode(b) };
  } catch {
    return { [`${name}Base64`]: toBase64(b) };
  }
}

/** Parses a duration: `30s`, `1500ms`, `2m`, `1h`, or a plain number of milliseconds. Throws
 * {@link InvalidArgumentError}. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) bad(`"${s}" is not a duration (like 30s, 1500ms, 2m)`);
  const n = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "ms"]!;
  if (!Number.isSafeInteger(Math.ceil(n))) bad(`duration "${s}" is too long`);
  return Math.ceil(n);
}
