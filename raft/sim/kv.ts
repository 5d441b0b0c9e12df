/**
 * The simulator's replicated key-value state machine with client sessions, and its command
 * codec. A write carries (clientId, seq); the state machine remembers the highest seq applied per
 * client and ignores a retried write it already applied, so a retry never applies twice.
 *
 * Command layout (little endian): kind u8 (1 put, 2 delete, 3 compare-and-set, 4 multi-key
 * atomic put), clientId u32, seq u32, key length u16, key bytes, value bytes (the rest).
 *
 * A compare-and-set carries `{ expected, value }` as JSON in the value bytes: it sets `key` to
 * `value` when the key's value is `expected` (null: missing) and reports whether it did. A
 * multi-key put carries `{ keys, values }`: every key gets its value in one step (the model of an
 * atomic operation; `key` names the group for the checker). A retried command answers the first
 * attempt's result (the session keeps it), as the real state machine does.
 *
 * @module
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A write command. */
export interface KvCommand {
  /** What it does. */
  kind: "put" | "delete" | "cas" | "mput";
  /** The issuing client. */
  clientId: number;
  /** The client's sequence number for this write (1, 2, ...). */
  seq: number;
  /** The key. */
  key: string;
  /** The value (empty for delete; JSON for cas and mput). */
  value: string;
}

const KINDS = ["put", "delete", "cas", "mput"] as const;

/** Encodes a write command. */
export function encodeCommand(cmd: KvCommand): Uint8Array {
  const key = enc.encode(cmd.key);
  const value = enc.encode(cmd.value);
  const out = new Uint8Array(11 + key.length + value.length);
  const view = new DataView(out.buffer);
  out[0] = KINDS.indexOf(cmd.kind) + 1;
  view.setUint32(1, cmd.clientId, true);
  view.setUint32(5, cmd.seq, true);
  view.setUint16(9, key.length, true);
  out.set(key, 11);
  out.set(value, 11 + key.length);
  return out;
}

/** Decodes a write command; throws RangeError on malformed bytes. */
export function decodeCommand(data: Uint8Array): KvCommand {
  if (data.length < 11 || data[0] < 1 || data[0] > KINDS.length) {
    throw new RangeError(`malformed kv command of ${data.length} bytes`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const keyLen = view.getUint16(9, true);
  if (11 + keyLen > data.length) throw new RangeError("kv command key overruns its buffer");
  return {
    kind: KINDS[data[0] - 1],
    clientId: view.getUint32(1, true),
    seq: view.getUint32(5, true),
    key: dec.decode(data.subarray(11, 11 + keyLen)),
    value: dec.decode(data.subarray(11 + keyLen)),
  };
}

/** What applying one command did. */
export interface KvApplyResult {
  /** The command (null for no-ops). */
  cmd: KvCommand | null;
  /** True when the session had already applied this write (a retry). */
  duplicate: boolean;
  /** For a compare-and-set: whether it set the key (a retry answers the first attempt's). */
  swapped?: boolean;
}

/** Deliberate bugs of every SimKv (set by a simulation run that shows the checker catches them;
 * runs are sequential, so a module-wide switch is enough). */
export const simKvBugs = {
  /** Compare-and-set ignores its expected value. */
  casIgnoresExpected: false,
  /** A multi-key put writes its first key at once and the others with the next command. */
  tornMultiPut: false,
};

/** An in-memory key-value map with client sessions. */
export class SimKv {
  /** The last applied log index. */
  applied = 0;
  #data = new Map<string, string>();
  #sessions = new Map<number, number>();
  /** The last compare-and-set result per client (answered again to a retry). */
  #results = new Map<number, boolean>();
  /** Writes a torn multi-key put left for the next command (bug injection only). */
  #deferred: [string, string][] = [];

  /** Applies the entry at `index` (empty data = no-op or conf change). */
  apply(index: number, data: Uint8Array): KvApplyResult {
    if (index !== this.applied + 1) {
      throw new RangeError(`applying index ${index} after ${this.applied}`);
    }
    this.applied = index;
    for (const [k, v] of this.#deferred.splice(0)) this.#data.set(k, v);
    if (data.length === 0) return { cmd: null, duplicate: false };
    const cmd = decodeCommand(data);
    const last = this.#sessions.get(cmd.clientId) ?? 0;
    if (cmd.seq <= last) {
      return cmd.kind === "cas" && cmd.seq === last
        ? { cmd, duplicate: true, swapped: this.#results.get(cmd.clientId) ?? false }
        : { cmd, duplicate: true };
    }
    this.#sessions.set(cmd.clientId, cmd.seq);
    switch (cmd.kind) {
      case "put":
        this.#data.set(cmd.key, cmd.value);
        break;
      case "delete":
        this.#data.delete(cmd.key);
        break;
      case "cas": {
        const { expected, value } = JSON.parse(cmd.value) as {
          expected: string | null;
          value: string;
        };
        const swapped = simKvBugs.casIgnoresExpected ||
          (this.#data.get(cmd.key) ?? null) === expected;
        if (swapped) this.#data.set(cmd.key, value);
        this.#results.set(cmd.clientId, swapped);
        return { cmd, duplicate: false, swapped };
      }
      case "mput": {
        const { keys, values } = JSON.parse(cmd.value) as { keys: string[]; values: string[] };
        keys.forEach((k, i) => {
          if (simKvBugs.tornMultiPut && i > 0) this.#deferred.push([k, values[i]]);
          else this.#data.set(k, values[i]);
        });
        break;
      }
    }
    return { cmd, duplicate: false };
  }

  /** Marks `index` applied without a command (conf-change entries). */
  skip(index: number): void {
    this.apply(index, new Uint8Array(0));
  }

  /** Reads a key (null when missing). */
  get(key: string): string | null {
    return this.#data.get(key) ?? null;
  }

  /** Serializes data and sessions (sorted, so equal states give equal bytes). */
  serialize(): Uint8Array {
    const data = [...this.#data.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const sessions = [...this.#sessions.entries()].sort((a, b) => a[0] - b[0]);
    const results = [...this.#results.entries()].sort((a, b) => a[0] - b[0]);
    const deferred = this.#deferred;
    return enc.encode(
      JSON.stringify({ applied: this.applied, data, sessions, results, deferred }),
    );
  }

  /** Replaces the state with a snapshot taken at `index` (empty bytes = initial state). */
  static restore(bytes: Uint8Array, index: number): SimKv {
    const kv = new SimKv();
    kv.applied = index;
    if (bytes.length === 0) return kv;
    const parsed = JSON.parse(dec.decode(bytes)) as {
      applied: number;
      data: [string, string][];
      sessions: [number, number][];
      results?: [number, boolean][];
      deferred?: [string, string][];
    };
    if (parsed.applied !== index) {
      throw new RangeError(`snapshot data is at ${parsed.applied}, metadata says ${index}`);
    }
    kv.#data = new Map(parsed.data);
    kv.#sessions = new Map(parsed.sessions);
    kv.#results = new Map(parsed.results ?? []);
    kv.#deferred = parsed.deferred ?? [];
    return kv;
  }

  /** A string that is equal for equal states. */
  fingerprint(): string {
    return dec.decode(this.serialize());
  }
}
