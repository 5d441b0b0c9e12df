/**
 * A `Deno.Kv`-shaped client for gokv's KV Connect server, for code that cannot use
 * `--unstable-kv` or runs on Node: the same API, the same key encoding (client/kv_key.ts) and the
 * same value encodings (client/kv_value.ts), so what `Deno.openKv(url)` writes reads back
 * identically here and the other way round.
 *
 * @example
 * ```ts ignore
 * import { openKv } from "@gokv/gokv";
 * const kv = await openKv("http://127.0.0.1:9001/kv", { token: "my-token" });
 * await kv.set(["users", "ada"], { name: "Ada" });
 * console.log((await kv.get(["users", "ada"])).value);
 * kv.close();
 * ```
 *
 * @module
 */
import {
  AtomicWriteStatus,
  type Check,
  decodeAtomicWriteOutput,
  decodeSnapshotReadOutput,
  decodeWatchOutput,
  encodeAtomicWrite,
  encodeSnapshotRead,
  encodeWatch,
  type KvEntryMsg,
  type Mutation,
  MutationType,
  type ReadRange,
  SnapshotReadStatus,
} from "./kv_connect_codec.ts";
import { decodeKey, encodeKey, type KvKey, type KvKeyPart } from "./kv_key.ts";
import { decodeValue, encodeValue, KvU64 } from "./kv_value.ts";
import { GokvError } from "./errors.ts";
import { defaultNodeLimits } from "../config/limits.ts";
import {
  compareBytes as compare,
  concatBytes as concat,
  fromBase64Url as fromB64url,
  hasPrefix as startsWith,
  toBase64Url as b64url,
  toHex as hex,
} from "../storage/bytes.ts";

export { KvU64 };
export type { KvKey, KvKeyPart };

/** Read consistency, as in `Deno.KvConsistencyLevel`. */
export type KvConsistencyLevel = "strong" | "eventual";

/** An entry read, as in `Deno.KvEntry`. */
export interface KvEntry<T> {
  /** The key. */
  key: KvKey;
  /** The value. */
  value: T;
  /** The commit that last wrote it: 20 hex digits. */
  versionstamp: string;
}

/** An entry or the absence of one, as in `Deno.KvEntryMaybe`. */
export type KvEntryMaybe<T> = KvEntry<T> | { key: KvKey; value: null; versionstamp: null };

/** A committed write, as in `Deno.KvCommitResult`. */
export interface KvCommitResult {
  /** Always true. */
  ok: true;
  /** The commit's versionstamp. */
  versionstamp: string;
}

/** A failed check, as in `Deno.KvCommitError`. */
export interface KvCommitError {
  /** Always false. */
  ok: false;
}

/** A check of an atomic operation, as in `Deno.AtomicCheck`. */
export interface AtomicCheck {
  /** The key. */
  key: KvKey;
  /** Its expected versionstamp; null: the key must be absent. */
  versionstamp: string | null;
}

/** Which keys `list` returns, as in `Deno.KvListSelector`. */
export type KvListSelector =
  | { prefix: KvKey }
  | { prefix: KvKey; start: KvKey }
  | { prefix: KvKey; end: KvKey }
  | { start: KvKey; end: KvKey };

/** Options of `list`, as in `Deno.KvListOptions`. */
export interface KvListOptions {
  /** Entries at most. */
  limit?: number;
  /** Continue after this cursor (an earlier iterator's `cursor`). */
  cursor?: string;
  /** Descending key order. */
  reverse?: boolean;
  /** Read consistency (default strong). */
  consistency?: KvConsistencyLevel;
  /** Entries fetched per request (default: `limit`, or 100; at most 500 unless given). */
  batchSize?: number;
}

/** A mutation, as in `Deno.KvMutation`. */
export type KvMutation =
  & { key: KvKey }
  & (
    | { type: "set"; value: unknown; expireIn?: number }
    | { type: "delete" }
    | { type: "sum"; value: KvU64 | number | bigint }
    | { type: "max"; value: KvU64 }
    | { type: "min"; value: KvU64 }
  );

/** Options of {@link openKv}. */
export interface OpenKvOptions {
  /** The access token (default: the `DENO_KV_ACCESS_TOKEN` environment variable). */
  token?: string;
  /** How long a request retries a server that is unavailable (5xx, unreachable) before it
   * fails (ms; default 60 000). Deno's client retries without end. */
  retryTimeoutMs?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/** A request the server refused (4xx): not retried. `status` is the HTTP status. */
export class KvConnectRequestError extends GokvError {
  /** Creates the error. */
  constructor(readonly url: string, readonly status: number, readonly body: string) {
    super(`KV Connect failed to call '${url}' (status=${status}): ${body}`);
    this.name = "KvConnectRequestError";
  }
}

const LIMITS = defaultNodeLimits();

function fromHex(s: string): Uint8Array {
  if (!/^[0-9a-f]{20}$/.test(s)) throw new TypeError(`invalid versionstamp "${s}"`);
  return Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
}

function writeKey(key: KvKey): Uint8Array {
  const k = encodeKey(key);
  if (k.length > LIMITS.atomicKeyBytes) {
    throw new TypeError(`Key too large for write (max ${LIMITS.atomicKeyBytes} bytes)`);
  }
  if (k.length === 0) throw new TypeError("Key cannot be empty");
  return k;
}

function readKey(key: KvKey): Uint8Array {
  const k = encodeKey(key);
  if (k.length > LIMITS.kvConnectReadKeyBytes) {
    throw new TypeError(`Key too large for read (max ${LIMITS.kvConnectReadKeyBytes} bytes)`);
  }
  return k;
}

function entryOf<T>(e: KvEntryMsg): KvEntry<T> {
  return {
    key: decodeKey(e.key),
    value: decodeValue(e.value, e.encoding) as T,
    versionstamp: hex(e.versionstamp),
  };
}

function valueMsg(value: unknown) {
  const v = encodeValue(value);
  if (v.data.length > LIMITS.atomicValueBytes) {
    throw new TypeError(`Value too large (max ${LIMITS.atomicValueBytes} bytes)`);
  }
  return v;
}

function expireAt(expireIn: number | undefined): number {
  if (expireIn === undefined) return 0;
  if (!Number.isSafeInteger(expireIn) || expireIn <= 0) {
    throw new TypeError("expireIn must be a positive integer");
  }
  return Date.now() + expireIn;
}

interface Metadata {
  version: number;
  databaseId: string;
  strong: string;
  eventual: string;
  token: string;
  expiresAt: number;
}

/** The connection: metadata exchange (renewed before it expires) and data-path calls with
 * retries of unavailable servers. */
class Remote {
  #meta: Metadata | undefined;
  #refresh: Promise<Metadata> | undefined;
  readonly #fetch: typeof fetch;
  readonly #retryMs: number;
  #closed = false;
  readonly aborts: Set<AbortController> = new Set();

  constructor(readonly url: string, readonly token: string, opts: OpenKvOptions) {
    this.#fetch = opts.fetch ?? fetch;
    this.#retryMs = opts.retryTimeoutMs ?? 60_000;
  }

  close(): void {
    this.#closed = true;
    for (const a of this.aborts) a.abort();
  }

  /** POSTs with retries of network errors and 5xx until the retry deadline. */
  async #post(url: string, headers: HeadersInit, body: Uint8Array | string): Promise<Response> {
    const deadline = Date.now() + this.#retryMs;
    let attempt = 0;
    while (true) {
      if (this.#closed) throw new GokvError("Database is closed");
      let res: Response | undefined;
      let failure = "";
      const abort = new AbortController();
      this.aborts.add(abort);
      try {
        res = await this.#fetch(url, {
          method: "POST",
          headers,
          body: body as BodyInit,
          signal: abort.signal,
        });
        if (res.status >= 500) {
          failure = `status ${res.status}: ${await res.text()}`;
          res = undefined;
        }
      } catch (e) {
        if (this.#closed) throw new GokvError("Database is closed");
        failure = (e as Error).message;
      } finally {
        this.aborts.delete(abort);
      }
      if (res) {
        if (res.status === 200) return res;
        throw new KvConnectRequestError(url, res.status, await res.text());
      }
      if (Date.now() > deadline) {
        throw new GokvError(`KV Connect failed to call '${url}': ${failure}`);
      }
      const delay = Math.min(1000, 20 * 2 ** attempt++);
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay / 2));
    }
  }

  async #exchange(): Promise<Metadata> {
    const res = await this.#post(this.url, {
      authorization: `Bearer ${this.token}`,
      "content-type": "application/json",
    }, JSON.stringify({ supportedVersions: [1, 2, 3] }));
    const m = await res.json() as {
      version?: number;
      databaseId?: string;
      endpoints?: { url: string; consistency: string }[];
      token?: string;
      expiresAt?: string;
    };
    if (m.version !== 1 && m.version !== 2 && m.version !== 3) {
      throw new GokvError(`unsupported metadata version: ${m.version}`);
    }
    const base = res.url || this.url;
    const resolve = (u: string) => new URL(u, m.version === 1 ? undefined : base).href;
    const strong = m.endpoints?.find((e) => e.consistency === "strong");
    if (!strong) throw new GokvError("the server offers no strong consistency endpoint");
    const eventual = m.endpoints?.find((e) => e.consistency === "eventual") ?? strong;
    if (typeof m.databaseId !== "string" || typeof m.token !== "string" || !m.expiresAt) {
      throw new GokvError("invalid metadata exchange response");
    }
    return this.#meta = {
      version: m.version,
      databaseId: m.databaseId,
      strong: resolve(strong.url),
      eventual: resolve(eventual.url),
      token: m.token,
      expiresAt: Date.parse(m.expiresAt),
    };
  }

  /** Current metadata, exchanged again when it is within 10 s of its expiry. */
  metadata(): Promise<Metadata> {
    const m = this.#meta;
    if (m && m.expiresAt - Date.now() > 10_000) return Promise.resolve(m);
    return this.#refresh ??= this.#exchange().finally(() => this.#refresh = undefined);
  }

  headers(m: Metadata): Record<string, string> {
    const h: Record<string, string> = {
      authorization: `Bearer ${m.token}`,
      "content-type": "application/x-protobuf",
    };
    if (m.version === 1) h["x-transaction-domain-id"] = m.databaseId;
    else {
      h["x-denokv-database-id"] = m.databaseId;
      h["x-denokv-version"] = String(m.version);
    }
    return h;
  }

  async call(method: string, body: Uint8Array, eventual = false): Promise<Uint8Array> {
    const m = await this.metadata();
    const res = await this.#post(
      `${eventual ? m.eventual : m.strong}/${method}`,
      this.headers(m),
      body,
    );
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Opens a watch stream (one attempt; the caller reconnects). */
  async stream(body: Uint8Array, signal: AbortSignal): Promise<Response> {
    const m = await this.metadata();
    const url = `${m.eventual}/watch`;
    const res = await this.#fetch(url, {
      method: "POST",
      headers: this.headers(m),
      body: body as BodyInit,
      signal,
    });
    if (res.status >= 400 && res.status < 500) {
      throw new KvConnectRequestError(url, res.status, await res.text());
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`watch: status ${res.status}`);
    }
    return res;
  }

  async snapshotRead(
    ranges: ReadRange[],
    consistency: KvConsistencyLevel,
  ): Promise<KvEntryMsg[][]> {
    const out = decodeSnapshotReadOutput(
      await this.call("snapshot_read", encodeSnapshotRead({ ranges }), consistency === "eventual"),
    );
    const m = await this.metadata();
    if (m.version >= 3 ? out.status !== SnapshotReadStatus.Success : out.readDisabled) {
      throw new GokvError(
        out.status === SnapshotReadStatus.ReadDisabled || out.readDisabled
          ? "Reads are disabled for this database"
          : `Unspecified read error (code=${out.status})`,
      );
    }
    if (consistency === "strong" && !out.readIsStronglyConsistent) {
      throw new GokvError("Strong consistency reads are not available for this database");
    }
    if (out.ranges.length !== ranges.length) {
      throw new GokvError("the server answered another number of ranges than asked");
    }
    return out.ranges.map((r) => r.values);
  }

  async atomicWrite(checks: Check[], mutations: Mutation[]): Promise<string | null> {
    const out = decodeAtomicWriteOutput(
      await this.call("atomic_write", encodeAtomicWrite({ checks, mutations, enqueues: [] })),
    );
    switch (out.status) {
      case AtomicWriteStatus.Success:
        return hex(out.versionstamp);
      case AtomicWriteStatus.CheckFailure:
        return null;
      case AtomicWriteStatus.WriteDisabled:
        throw new GokvError("Writes are disabled for this database");
      default:
        throw new GokvError("Unspecified write error");
    }
  }
}

/** A batch of checks and mutations committed together, as `Deno.AtomicOperation`. */
export class AtomicOperation {
  readonly #checks: Check[] = [];
  readonly #mutations: Mutation[] = [];
  readonly #remote: Remote;
  /** Use {@link Kv.atomic}. */
  constructor(remote: unknown) {
    this.#remote = remote as Remote;
  }

  /** Adds checks: each key must have the versionstamp (null: be absent) at commit. */
  check(...checks: AtomicCheck[]): this {
    for (const c of checks) {
      this.#checks.push({
        key: readKey(c.key),
        versionstamp: c.versionstamp === null ? new Uint8Array() : fromHex(c.versionstamp),
      });
    }
    return this;
  }

  /**
   * Adds mutations, as Deno's client does: `sum` of a `KvU64` adds u64s (wrapping); `sum` of a
   * number or a bigint adds V8 numbers or bigints (the stored value must be of the same type;
   * the server answers denokv's message otherwise); `min` / `max` take `KvU64`s. Operands are sent
   * as they are and checked by the server (its refusal is a {@link KvConnectRequestError}).
   */
  mutate(...mutations: KvMutation[]): this {
    for (const m of mutations) {
      const key = writeKey(m.key);
      const base = { key, expireAtMs: 0, sumMin: new Uint8Array(), sumMax: new Uint8Array() };
      const hasValue = Object.hasOwn(m, "value");
      switch (m.type) {
        case "set":
          if (!hasValue) throw new TypeError("Invalid mutation 'set' without value");
          this.#mutations.push({
            ...base,
            mutationType: MutationType.Set,
            value: valueMsg(m.value),
            expireAtMs: expireAt(m.expireIn),
            sumClamp: false,
          });
          break;
        case "delete":
          if (hasValue) throw new TypeError("Invalid mutation 'delete' with value");
          this.#mutations.push({ ...base, mutationType: MutationType.Delete, sumClamp: false });
          break;
        case "sum":
        case "min":
        case "max": {
          if (!hasValue) throw new TypeError(`Invalid mutation '${m.type}' without value`);
          const type = m.type === "sum"
            ? MutationType.Sum
            : m.type === "min"
            ? MutationType.Min
            : MutationType.Max;
          // A KvU64 goes as VE_LE64, anything else as VE_V8 (a V8 sum: M_SUM without bounds).
          this.#mutations.push({
            ...base,
            mutationType: type,
            value: valueMsg(m.value),
            sumClamp: false,
          });
          break;
        }
        default:
          throw new TypeError("Invalid mutation type");
      }
    }
    if (this.#mutations.length > LIMITS.atomicMutations) {
      throw new TypeError(`Too many mutations (max ${LIMITS.atomicMutations})`);
    }
    return this;
  }

  /** Adds `n` to the u64 at `key` (wrapping at 2^64; an absent key counts as 0). */
  sum(key: KvKey, n: bigint): this {
    return this.mutate({ type: "sum", key, value: new KvU64(n) });
  }
  /** Keeps the smaller of the u64 at `key` and `n`. */
  min(key: KvKey, n: bigint): this {
    return this.mutate({ type: "min", key, value: new KvU64(n) });
  }
  /** Keeps the larger of the u64 at `key` and `n`. */
  max(key: KvKey, n: bigint): this {
    return this.mutate({ type: "max", key, value: new KvU64(n) });
  }
  /** Sets `key` to `value` (gone after `expireIn` ms when given). */
  set(key: KvKey, value: unknown, options?: { expireIn?: number }): this {
    return this.mutate({ type: "set", key, value, expireIn: options?.expireIn });
  }
  /** Deletes `key`. */
  delete(key: KvKey): this {
    return this.mutate({ type: "delete", key });
  }
  /** Queues are not supported by gokv: always throws. */
  enqueue(_value: unknown, _options?: unknown): this {
    throw new TypeError("Enqueue operations are not supported by gokv (no queues)");
  }

  /** Commits: `{ ok: true, versionstamp }`, or `{ ok: false }` when a check failed (nothing
   * was applied). */
  async commit(): Promise<KvCommitResult | KvCommitError> {
    const vs = await this.#remote.atomicWrite(this.#checks, this.#mutations);
    return vs === null ? { ok: false } : { ok: true, versionstamp: vs };
  }
}

/** The entries of a `list`, fetched in batches; `cursor` continues after the last one
 * returned, as `Deno.KvListIterator`. */
export class KvListIterator<T> implements AsyncIterableIterator<KvEntry<T>> {
  #start: Uint8Array;
  #end: Uint8Array;
  readonly #prefix: Uint8Array;
  #last: Uint8Array | undefined;
  #buffer: KvEntry<T>[] = [];
  #done = false;
  #remaining: number;
  readonly #remote: Remote;
  readonly #opts: KvListOptions;

  /** Use {@link Kv.list}. */
  constructor(remote: unknown, selector: KvListSelector, opts: KvListOptions) {
    this.#remote = remote as Remote;
    this.#opts = opts;
    const s = selector as { prefix?: KvKey; start?: KvKey; end?: KvKey };
    if (s.prefix !== undefined) {
      const p = readKey(s.prefix);
      this.#prefix = p;
      this.#start = s.start ? readKey(s.start) : concat(p, new Uint8Array([0x00]));
      this.#end = s.end ? readKey(s.end) : concat(p, new Uint8Array([0xff]));
      if (s.start && !startsWith(this.#start, p)) {
        throw new TypeError("Start key is not in the keyspace defined by prefix");
      }
      if (s.end && !startsWith(this.#end, p)) {
        throw new TypeError("End key is not in the keyspace defined by prefix");
      }
    } else if (s.start !== undefined && s.end !== undefined) {
      this.#start = readKey(s.start);
      this.#end = readKey(s.end);
      this.#prefix = commonPrefix(this.#start, this.#end);
    } else {
      throw new TypeError("Invalid selector: give prefix, or start and end");
    }
    if (compare(this.#start, this.#end) > 0) {
      throw new TypeError("Start key is greater than end key");
    }
    if (opts.cursor) {
      const at = concat(this.#prefix, fromB64url(opts.cursor));
      if (compare(at, this.#start) < 0 || compare(at, this.#end) > 0) {
        throw new TypeError("Cursor is out of the selector's range");
      }
      if (opts.reverse) this.#end = at;
      else this.#start = concat(at, new Uint8Array([0x00]));
    }
    if (opts.limit !== undefined && (!Number.isSafeInteger(opts.limit) || opts.limit <= 0)) {
      throw new TypeError(`Limit must be a positive integer: received ${opts.limit}`);
    }
    this.#remaining = opts.limit ?? Infinity;
  }

  /** Continues after the last entry returned (empty before the first). */
  get cursor(): string {
    if (!this.#last) throw new Error("Cannot get cursor before first iteration");
    return b64url(this.#last.subarray(this.#prefix.length));
  }

  async #fetch(): Promise<void> {
    let batch = this.#opts.batchSize ?? this.#opts.limit ?? 100;
    if (this.#opts.batchSize === undefined) batch = Math.min(batch, 500);
    const limit = Math.min(batch, this.#remaining, LIMITS.kvConnectReadEntries);
    const [values] = await this.#remote.snapshotRead([{
      start: this.#start,
      end: this.#end,
      limit,
      reverse: this.#opts.reverse ?? false,
    }], this.#opts.consistency ?? "strong");
    this.#buffer = values.map((e) => entryOf<T>(e));
    this.#remaining -= values.length;
    if (values.length < limit || this.#remaining <= 0) this.#done = true;
    if (values.length > 0) {
      const last = values[values.length - 1].key;
      if (this.#opts.reverse) this.#end = last;
      else this.#start = concat(last, new Uint8Array([0x00]));
    }
  }

  /** The next entry. */
  async next(): Promise<IteratorResult<KvEntry<T>>> {
    if (this.#buffer.length === 0 && !this.#done) await this.#fetch();
    const e = this.#buffer.shift();
    if (!e) return { done: true, value: undefined };
    this.#last = encodeKey(e.key);
    return { done: false, value: e };
  }

  /** Itself. */
  [Symbol.asyncIterator](): AsyncIterableIterator<KvEntry<T>> {
    return this;
  }
}

function commonPrefix(a: Uint8Array, b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.subarray(0, i);
}

/** A gokv database through KV Connect, with `Deno.Kv`'s API. Open it with {@link openKv}. */
export class Kv {
  readonly #remote: Remote;
  /** Use {@link openKv}. */
  constructor(remote: unknown) {
    this.#remote = remote as Remote;
  }

  /** The entry at `key` (value and versionstamp null when absent). */
  async get<T = unknown>(
    key: KvKey,
    options?: { consistency?: KvConsistencyLevel },
  ): Promise<KvEntryMaybe<T>> {
    const [e] = await this.getMany<[T]>([key], options);
    return e;
  }

  /** The entries at `keys`, read from one snapshot (at most 10 keys). */
  async getMany<T extends readonly unknown[]>(
    keys: readonly KvKey[],
    options?: { consistency?: KvConsistencyLevel },
  ): Promise<{ [K in keyof T]: KvEntryMaybe<T[K]> }> {
    if (keys.length > LIMITS.kvConnectReadRanges) {
      throw new TypeError(`Too many ranges (max ${LIMITS.kvConnectReadRanges})`);
    }
    const ranges = keys.map((k) => {
      const start = readKey(k);
      return { start, end: concat(start, new Uint8Array([0])), limit: 1, reverse: false };
    });
    const out = await this.#remote.snapshotRead(ranges, options?.consistency ?? "strong");
    return out.map((values, i) =>
      values.length > 0
        ? entryOf(values[0])
        : { key: decodeKey(encodeKey(keys[i])), value: null, versionstamp: null }
    ) as { [K in keyof T]: KvEntryMaybe<T[K]> };
  }

  /** Sets `key` to `value` (gone after `expireIn` ms when given). */
  async set(key: KvKey, value: unknown, options?: { expireIn?: number }): Promise<KvCommitResult> {
    const r = await this.atomic().set(key, value, options).commit();
    if (!r.ok) throw new GokvError("Failed to set value");
    return r;
  }

  /** Deletes `key`. */
  async delete(key: KvKey): Promise<void> {
    await this.atomic().delete(key).commit();
  }

  /** The entries the selector names, in key order (or reversed), fetched in batches. */
  list<T = unknown>(selector: KvListSelector, options: KvListOptions = {}): KvListIterator<T> {
    return new KvListIterator<T>(this.#remote, selector, options);
  }

  /** A new atomic operation. */
  atomic(): AtomicOperation {
    return new AtomicOperation(this.#remote);
  }

  /** Queues are not supported by gokv: always rejects. */
  enqueue(_value: unknown, _options?: unknown): Promise<never> {
    return Promise.reject(new TypeError("Enqueue operations are not supported by gokv"));
  }

  /**
   * A stream of the entries at `keys` (at most 10): the current ones first, then again each time
   * one of them changes (`raw`: also when none changed). Reconnects by itself; cancel the stream
   * to stop.
   */
  watch<T extends readonly unknown[]>(
    keys: readonly KvKey[],
    options?: { raw?: boolean },
  ): ReadableStream<{ [K in keyof T]: KvEntryMaybe<T[K]> }> {
    if (keys.length > LIMITS.kvConnectWatchedKeys) {
      throw new TypeError(`Too many keys (max ${LIMITS.kvConnectWatchedKeys})`);
    }
    const body = encodeWatch({ keys: keys.map((k) => ({ key: readKey(k) })) });
    const state: (KvEntryMaybe<unknown> | undefined)[] = keys.map(() => undefined);
    const abort = new AbortController();
    this.#remote.aborts.add(abort);
    const remote = this.#remote;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let pending: Uint8Array = new Uint8Array();
    const readFrame = async (): Promise<Uint8Array | null> => {
      while (true) {
        if (pending.length >= 4) {
          const n = new DataView(pending.buffer, pending.byteOffset, 4).getUint32(0, true);
          if (pending.length >= 4 + n) {
            const frame = pending.slice(4, 4 + n);
            pending = pending.slice(4 + n);
            return frame;
          }
        }
        const r = await reader!.read();
        if (r.done) return null;
        pending = concat(pending, r.value);
      }
    };
    let attempt = 0;
    return new ReadableStream({
      async pull(ctl) {
        while (true) {
          if (abort.signal.aborted) return ctl.close();
          try {
            if (!reader) {
              reader = (await remote.stream(body, abort.signal)).body!.getReader();
              pending = new Uint8Array();
            }
            const frame = await readFrame();
            if (frame === null) throw new Error("watch stream ended");
            attempt = 0;
            if (frame.length === 0) continue; // keep-alive
            const out = decodeWatchOutput(frame);
            if (out.status !== SnapshotReadStatus.Success) {
              throw new GokvError(`watch failed (status ${out.status})`);
            }
            let changed = false;
            out.keys.forEach((k, i) => {
              if (!k.changed) return;
              const next: KvEntryMaybe<unknown> = k.entryIfChanged
                ? entryOf(k.entryIfChanged)
                : { key: decodeKey(encodeKey(keys[i])), value: null, versionstamp: null };
              if (state[i] !== undefined && state[i]!.versionstamp === next.versionstamp) return;
              state[i] = next;
              changed = true;
            });
            if (!changed && !options?.raw) continue;
            ctl.enqueue(
              state.map((s, i) =>
                s ?? { key: decodeKey(encodeKey(keys[i])), value: null, versionstamp: null }
              ) as { [K in keyof T]: KvEntryMaybe<T[K]> },
            );
            return;
          } catch (e) {
            if (abort.signal.aborted) return ctl.close();
            if (e instanceof KvConnectRequestError || e instanceof GokvError) {
              ctl.error(e);
              return;
            }
            // Disconnected: reconnect after a short back-off; the server sends the full state
            // again and unchanged versionstamps are not reported twice.
            reader?.cancel().catch(() => {});
            reader = undefined;
            const delay = Math.min(1000, 50 * 2 ** attempt++);
            await new Promise((r) => setTimeout(r, delay));
          }
        }
      },
      cancel() {
        abort.abort();
        remote.aborts.delete(abort);
        reader?.cancel().catch(() => {});
      },
    });
  }

  /** Closes the database: pending requests and watches end. */
  close(): void {
    this.#remote.close();
  }

  /** Closes the database (`using kv = await openKv(...)`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens a gokv database through KV Connect at `url` (what `Deno.openKv(url)` takes, e.g.
 * `http://127.0.0.1:9001/kv`) with the access token (default: `DENO_KV_ACCESS_TOKEN`). Runs the
 * metadata exchange before it resolves, so a wrong URL or token fails here.
 */
export async function openKv(url: string, options: OpenKvOptions = {}): Promise<Kv> {
  const token = options.token ?? (globalThis as { Deno?: typeof Deno }).Deno?.env.get(
    "DENO_KV_ACCESS_TOKEN",
  );
  if (!token) {
    throw new TypeError("openKv needs an access token: options.token or DENO_KV_ACCESS_TOKEN");
  }
  const remote = new Remote(url, token, options);
  await remote.metadata();
  return new Kv(remote);
}
