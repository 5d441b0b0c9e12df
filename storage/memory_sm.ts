/**
 * The memory {@link KvStateMachine}: an ordered map plus the session table, nothing persisted.
 * The simplefile backend extends it with a JSON state file.
 *
 * @module
 */
import type { ApplyCommand } from "../raft/state_machine.ts";
import { bytesToLatin1, hasPrefix, latin1ToBytes, prefixEnd } from "./bytes.ts";
import { CommandOp } from "./command.ts";
import { StoreClosedError } from "./errors.ts";
import { settle } from "./settle.ts";
import {
  type ApplyResult,
  type KvStateMachine,
  planApply,
  recordSession,
  type ScanOptions,
  type SessionEntry,
  type SessionTable,
  type StateEntry,
  type StateExport,
  type StateImport,
} from "./kv_state_machine.ts";
import { readSnapshot, SnapshotWriter } from "./sm_snapshot.ts";

/** A byte-keyed map that can be scanned in key order. */
export class OrderedBytesMap {
  /** latin1(key) -> value. */
  readonly map = new Map<string, Uint8Array>();
  #sorted: string[] | null = [];

  /** Number of keys. */
  get size(): number {
    return this.map.size;
  }

  /** The value of `key`. */
  get(key: Uint8Array): Uint8Array | undefined {
    return this.map.get(bytesToLatin1(key));
  }

  /** Sets `key`; returns whether it existed. */
  set(key: Uint8Array, value: Uint8Array): boolean {
    const k = bytesToLatin1(key);
    const existed = this.map.has(k);
    this.map.set(k, value);
    if (!existed) this.#sorted = null;
    return existed;
  }

  /** Removes `key`; returns whether it existed. */
  delete(key: Uint8Array): boolean {
    const existed = this.map.delete(bytesToLatin1(key));
    if (existed) this.#sorted = null;
    return existed;
  }

  /** Removes everything. */
  clear(): void {
    this.map.clear();
    this.#sorted = [];
  }

  /** Keys (latin1) in ascending order. */
  sortedKeys(): string[] {
    if (this.#sorted === null) this.#sorted = [...this.map.keys()].sort();
    return this.#sorted;
  }

  /** Pairs matching `opts`, in order. */
  scan(opts: ScanOptions = {}): Array<[Uint8Array, Uint8Array]> {
    const keys = this.sortedKeys();
    let lo = opts.start ? bytesToLatin1(opts.start) : undefined;
    let hi = opts.end ? bytesToLatin1(opts.end) : undefined;
    if (opts.prefix) {
      const p = bytesToLatin1(opts.prefix);
      if (lo === undefined || p > lo) lo = p;
      const pe = prefixEnd(opts.prefix);
      if (pe) {
        const e = bytesToLatin1(pe);
        if (hi === undefined || e < hi) hi = e;
      }
    }
    const limit = opts.limit ?? Infinity;
    const out: Array<[Uint8Array, Uint8Array]> = [];
    if (limit <= 0) return out;
    const from = lo === undefined ? 0 : lowerBound(keys, lo);
    const to = Math.max(from, hi === undefined ? keys.length : lowerBound(keys, hi));
    const pre = opts.prefix;
    const maxBytes = opts.maxBytes ?? Infinity;
    let bytes = 0;
    const push = (k: string) => {
      const kb = latin1ToBytes(k);
      if (pre && !hasPrefix(kb, pre)) return;
      const v = this.map.get(k)!;
      out.push([kb, v]);
      bytes += kb.length + v.length;
    };
    const more = () => out.length < limit && bytes <= maxBytes;
    if (opts.reverse) {
      for (let i = to - 1; i >= from && more(); i--) push(keys[i]);
    } else {
      for (let i = from; i < to && more(); i++) push(keys[i]);
    }
    return out;
  }
}

function lowerBound(keys: string[], k: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A state machine held in memory only. */
export class MemoryStateMachine implements KvStateMachine {
  /** The user data. */
  protected data = new OrderedBytesMap();
  /** The session table. */
  protected sessionTable: SessionTable = new Map();
  /** The last applied index. */
  protected applied = 0;
  #closed = false;
  #applies = 0;

  /** See {@link KvStateMachine.appliedIndex}. */
  appliedIndex(): number {
    return this.applied;
  }

  /** Applies commands (see kv_state_machine.ts for the results). */
  apply(cmds: ApplyCommand[]): Promise<ApplyResult[]> {
    return settle(() => this.applySync(cmds));
  }

  /** Applies commands synchronously. */
  protected applySync(cmds: ApplyCommand[]): ApplyResult[] {
    this.check();
    const out: ApplyResult[] = [];
    for (const c of cmds) {
      const plan = planApply(c.data, this.sessionTable);
      if (plan.kind === "done") {
        out.push(plan.result);
      } else {
        const cmd = plan.cmd;
        if (cmd.op === CommandOp.Put) this.data.set(cmd.key, cmd.value);
        else this.data.delete(cmd.key);
        const result = { ok: true as const };
        recordSession(cmd, result, this.sessionTable);
        out.push(result);
      }
      this.applied = c.index;
    }
    this.#applies += cmds.length;
    return out;
  }

  /** See {@link KvStateMachine.get}. */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return settle(() => {
      this.check();
      return this.data.get(key);
    });
  }

  /** See {@link KvStateMachine.scan}. */
  scan(opts: ScanOptions = {}): Promise<Array<[Uint8Array, Uint8Array]>> {
    return settle(() => {
      this.check();
      return this.data.scan(opts);
    });
  }

  /** See {@link KvStateMachine.sessions}. */
  sessions(): ReadonlyMap<bigint, SessionEntry> {
    return this.sessionTable;
  }

  /** Serializes data, sessions and applied index (see sm_snapshot.ts). */
  snapshot(): Promise<Uint8Array> {
    return settle(() => {
      this.check();
      return this.encodeSnapshot();
    });
  }

  /** Encodes the current state as a snapshot stream. */
  protected encodeSnapshot(): Uint8Array {
    const w = new SnapshotWriter(this.applied, this.sessionTable);
    for (const k of this.data.sortedKeys()) w.add(latin1ToBytes(k), this.data.map.get(k)!);
    return w.finish();
  }

  /** Replaces everything with a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): Promise<void> {
    return settle(() => {
      this.check();
      this.restoreSync(data, index);
    });
  }

  /** Decodes the whole snapshot first, then swaps it in (a bad snapshot changes nothing). */
  protected restoreSync(data: Uint8Array, index: number): void {
    const content = readSnapshot(data);
    const next = new OrderedBytesMap();
    for (const [k, v] of content.entries()) next.set(k, v);
    this.data = next;
    this.sessionTable = content.sessions;
    this.applied = index;
  }

  /** See {@link KvStateMachine.exportState}: a copy of the key index (values are shared, never
   * mutated in place), taken synchronously at the current applied index. */
  exportState(): Promise<StateExport> {
    return settle(() => {
      this.check();
      const keys = this.data.sortedKeys();
      const map = new Map(this.data.map);
      return {
        appliedIndex: this.applied,
        sessions: new Map(this.sessionTable),
        async *entries(): AsyncGenerator<StateEntry> {
          for (const k of keys) yield { key: latin1ToBytes(k), value: map.get(k)! };
        },
        release: () => map.clear(),
      };
    });
  }

  /** See {@link KvStateMachine.importState}: builds the new map first, then swaps it in. */
  async importState(src: StateImport): Promise<void> {
    this.check();
    const next = new OrderedBytesMap();
    for await (const e of src.entries) next.set(e.key, e.value);
    this.check();
    this.data = next;
    this.sessionTable = new Map(src.sessions);
    this.applied = src.appliedIndex;
    this.afterImport();
  }

  /** Called after an import swapped the state in (simplefile persists it). */
  protected afterImport(): void {}

  /** See {@link KvStateMachine.stats}. */
  stats(): Record<string, unknown> {
    return {
      backend: this.backendName(),
      keys: this.data.size,
      sessions: this.sessionTable.size,
      appliedIndex: this.applied,
      applied: this.#applies,
    };
  }

  /** The backend's name in stats. */
  protected backendName(): string {
    return "memory";
  }

  /** Releases nothing; later calls fail. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  /** Throws when closed. */
  protected check(): void {
    if (this.#closed) throw new StoreClosedError(`${this.backendName()} state machine`);
  }
}
