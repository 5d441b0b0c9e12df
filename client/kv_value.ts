/**
 * Deno KV values: how a JavaScript value is stored, exactly as `Deno.Kv` stores it.
 *
 * - a `Uint8Array` (or a subclass such as `Buffer`): its bytes as is (`VE_BYTES`);
 * - a {@link KvU64} (or a `Deno.KvU64`): 8 bytes little-endian (`VE_LE64`);
 * - anything else: the V8 ValueSerializer bytes of its structured clone (`VE_V8`), written and
 *   read with `node:v8` (typed arrays inside values in V8's own format, as Deno writes them).
 *
 * @module
 */
import { Deserializer, Serializer } from "node:v8";
import { ValueEncoding } from "./kv_connect_codec.ts";

const U64_MAX = (1n << 64n) - 1n;

/**
 * An unsigned 64-bit integer stored as such, like `Deno.KvU64`: the only kind of value that
 * `sum`, `min` and `max` mutations work on.
 *
 * @example
 * ```ts
 * import { KvU64 } from "./kv_value.ts";
 * const n = new KvU64(42n);
 * console.log(n.value + 1n); // 43n
 * ```
 */
export class KvU64 {
  /** The integer, 0 to 2^64 - 1. */
  readonly value: bigint;
  /** Wraps `value`: a TypeError unless it is a bigint, a RangeError outside 0 .. 2^64 - 1. */
  constructor(value: bigint) {
    if (typeof value !== "bigint") throw new TypeError("Value must be a bigint");
    if (value < 0n) throw new RangeError("Value must be a positive bigint");
    if (value > U64_MAX) throw new RangeError("Value must fit in a 64-bit unsigned integer");
    this.value = value;
    Object.freeze(this);
  }
  /** The integer (so `+` and comparisons work on it). */
  valueOf(): bigint {
    return this.value;
  }
  /** Its decimal digits. */
  toString(): string {
    return this.value.toString();
  }
  /** `Deno.KvU64`'s tag. */
  get [Symbol.toStringTag](): string {
    return "Deno.KvU64";
  }
  /** How `console.log` shows it: `[Deno.KvU64: 42n]`, like Deno's. */
  [Symbol.for("Deno.customInspect")](): string {
    return `[Deno.KvU64: ${this.value}n]`;
  }
}

/** A value's bytes and encoding (as carried by KV Connect). */
export interface EncodedValue {
  /** The bytes. */
  data: Uint8Array;
  /** How to read them. */
  encoding: ValueEncoding;
}

/** Whether `v` is a u64 of this module or of the Deno runtime (`Deno.KvU64`). */
export function isKvU64(v: unknown): v is { readonly value: bigint } {
  if (v instanceof KvU64) return true;
  const DenoU64 = (globalThis as { Deno?: { KvU64?: new (v: bigint) => unknown } }).Deno?.KvU64;
  return DenoU64 !== undefined && v instanceof DenoU64;
}

/** The 8 little-endian bytes of a u64. */
export function u64Bytes(n: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n, true);
  return out;
}

/** V8 ValueSerializer bytes of `value` (a DataCloneError for functions, symbols...). */
export function serializeV8(value: unknown): Uint8Array {
  const s = new Serializer();
  s.writeHeader();
  s.writeValue(value);
  const b = s.releaseBuffer();
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The value of V8 ValueSerializer bytes. */
export function deserializeV8(bytes: Uint8Array): unknown {
  const d = new Deserializer(bytes);
  d.readHeader();
  return d.readValue();
}

/** Encodes a value as `Deno.Kv` does. */
export function encodeValue(value: unknown): EncodedValue {
  if (value instanceof Uint8Array) return { data: value, encoding: ValueEncoding.Bytes };
  if (isKvU64(value)) return { data: u64Bytes(value.value), encoding: ValueEncoding.LE64 };
  return { data: serializeV8(value), encoding: ValueEncoding.V8 };
}

/** A stored value that cannot be read (unknown encoding, a u64 not of 8 bytes). */
export class KvValueError extends TypeError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "KvValueError";
  }
}

/** Decodes a stored value as `Deno.Kv` does. */
export function decodeValue(data: Uint8Array, encoding: ValueEncoding): unknown {
  switch (encoding) {
    case ValueEncoding.Bytes:
      return data;
    case ValueEncoding.LE64:
      if (data.length !== 8) throw new KvValueError(`a u64 value has 8 bytes, not ${data.length}`);
      return new KvU64(new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true));
    case ValueEncoding.V8:
      return deserializeV8(data);
    default:
      throw new KvValueError(`Unknown value encoding ${encoding}`);
  }
}
