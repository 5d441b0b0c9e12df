/**
 * A model of the KV Connect store (server/kv_connect.ts `KvConnectStore`) in memory, for tests of
 * the protocol layer without a cluster: the same rules as Deno KV (versionstamps strictly
 * increasing, all mutations of one commit share it, checks, sum/min/max on u64, V8 sums by
 * storage/kv_model.ts applyV8Sum, expiry), the service's validation and limits (server/service.ts
 * `validateAtomic`).
 * The cluster tests run the same workloads against the real data model.
 *
 * @module
 */
import type {
  Consistency,
  KvConnectStore,
  StoreAtomicResult,
  StoreCheck,
  StoreEntry,
  StoreMutation,
} from "../server/kv_connect.ts";
import { applyV8Sum, suffixVersionstampedKey, ValueEncoding } from "../storage/kv_model.ts";
import { compareBytes, toHex as hex } from "../storage/bytes.ts";
import { validateAtomic } from "../server/service.ts";
import { type AtomicLimits, defaultNodeLimits } from "../config/limits.ts";

interface Stored {
  value: Uint8Array;
  encoding: ValueEncoding;
  versionstamp: Uint8Array;
  expireAt?: number;
}

/** The in-memory model store. */
export class MemoryKvStore implements KvConnectStore {
  readonly #data = new Map<string, { key: Uint8Array } & Stored>();
  #commit = 0n;
  /** Creates the store for database `id`. */
  constructor(
    readonly id: string = crypto.randomUUID(),
    private readonly now: () => number = Date.now,
    private readonly limits: AtomicLimits = defaultNodeLimits(),
  ) {}

  /** The database id. */
  databaseId(): Promise<string> {
    return Promise.resolve(this.id);
  }

  #live(k: Uint8Array): ({ key: Uint8Array } & Stored) | undefined {
    const e = this.#data.get(hex(k));
    if (e && e.expireAt !== undefined && e.expireAt <= this.now()) {
      this.#data.delete(hex(k));
      return undefined;
    }
    return e;
  }

  /** Point reads. */
  getMany(
    keys: Uint8Array[],
    opts: { consistency: Consistency },
  ): Promise<{ entries: (StoreEntry | null)[]; consistency: Consistency }> {
    const entries = keys.map((k) => {
      const e = this.#live(k);
      return e ? { ...e } : null;
    });
    return Promise.resolve({ entries, consistency: opts.consistency });
  }

  /** A range read. */
  range(r: Parameters<KvConnectStore["range"]>[0]): ReturnType<KvConnectStore["range"]> {
    const all = [...this.#data.values()]
      .filter((e) =>
        this.#live(e.key) && compareBytes(e.key, r.start) >= 0 &&
        compareBytes(e.key, r.end) < 0
      )
      .sort((a, b) => compareBytes(a.key, b.key));
    if (r.reverse) all.reverse();
    return Promise.resolve({ entries: all.slice(0, r.limit), consistency: r.consistency });
  }

  /** An atomic operation. */
  atomic(op: { checks: StoreCheck[]; mutations: StoreMutation[] }): Promise<StoreAtomicResult> {
    // The service's checks (the atomic limits among them), as a real node makes them.
    try {
      validateAtomic(op.checks, op.mutations, this.limits);
    } catch (e) {
      return Promise.reject(e);
    }
    const failed: number[] = [];
    op.checks.forEach((c, i) => {
      const e = this.#live(c.key);
      const vs = e ? hex(e.versionstamp) : null;
      if (vs !== (c.versionstamp ? hex(c.versionstamp) : null)) failed.push(i);
    });
    if (failed.length > 0) return Promise.resolve({ ok: false, failedChecks: failed });
    const vs = new Uint8Array(10);
    new DataView(vs.buffer).setBigUint64(0, ++this.#commit);
    const writes = new Map<string, ({ key: Uint8Array } & Stored) | null>();
    const current = (k: Uint8Array) => {
      const w = writes.get(hex(k));
      return w === undefined ? this.#live(k) : w ?? undefined;
    };
    for (const m of op.mutations) {
      if (m.type === "delete") {
        writes.set(hex(m.key), null);
      } else if (m.type === "set" || m.type === "setSuffixVersionstampedKey") {
        const key = m.type === "set" ? m.key : suffixVersionstampedKey(m.key, vs);
        writes.set(hex(key), {
          key,
          value: m.value,
          encoding: m.encoding,
          versionstamp: vs,
          expireAt: m.expireAt,
        });
      } else if (m.type === "sum" && m.encoding === ValueEncoding.V8) {
        // The data model's V8 sum (one owner of its rules: storage/kv_model.ts).
        const cur = current(m.key);
        const out = applyV8Sum(m, cur ?? undefined);
        if (typeof out === "string") return Promise.reject(new TypeError(out));
        writes.set(hex(m.key), { key: m.key, ...out, versionstamp: vs });
      } else {
        const cur = current(m.key);
        const operand = new DataView(m.value.buffer, m.value.byteOffset, 8).getBigUint64(0, true);
        let next = operand;
        if (cur) {
          if (cur.encoding !== ValueEncoding.LE64) {
            return Promise.reject(
              new TypeError(
                `Failed to perform '${m.type}' mutation on a non-U64 value in the database`,
              ),
            );
          }
          const v = new DataView(cur.value.buffer, cur.value.byteOffset, 8).getBigUint64(0, true);
          next = m.type === "sum"
            ? BigInt.asUintN(64, v + operand)
            : m.type === "min"
            ? (v < operand ? v : operand)
            : (v > operand ? v : operand);
        }
        const value = new Uint8Array(8);
        new DataView(value.buffer).setBigUint64(0, next, true);
        writes.set(hex(m.key), {
          key: m.key,
          value,
          encoding: ValueEncoding.LE64,
          versionstamp: vs,
        });
      }
    }
    for (const [k, w] of writes) {
      if (w) this.#data.set(k, w);
      else this.#data.delete(k);
    }
    return Promise.resolve({ ok: true, versionstamp: vs });
  }
}
