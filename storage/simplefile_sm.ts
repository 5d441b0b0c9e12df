/**
 * The simplefile {@link KvStateMachine}: the memory state machine whose whole store is written
 * as human-readable JSON (`sm-state.json`, temporary file + fsync + rename) after every `apply()`
 * and `restore()`. Correct before fast: the file always holds a consistent state and its applied
 * index, so after a crash the driver replays the log from there.
 *
 * ```json
 * { "version": 2, "appliedIndex": 42, "appliedLastChange": 3,
 *   "records": [["<store key base64>", "<value base64>"]] }
 * ```
 *
 * `appliedLastChange` is the position of the last user-key change of the entry at `appliedIndex`
 * (-1: none; absent: not known, as in files of an earlier version; see kv_core.ts).
 *
 * The records are the store of kv_core.ts (user keys under `0x01`, sessions and the clock under
 * `0x00`). Version 1 files (`data` of user keys, `sessions` of unregistered client ids) are read:
 * their data is kept, their sessions dropped.
 *
 * @module
 */
import { join } from "node:path";
import type { ApplyCommand } from "../raft/state_machine.ts";
import { fromBase64, toBase64 } from "./bytes.ts";
import { CorruptionError } from "./errors.ts";
import { denoEnv, type Env, mkdirDurable, readFileIfExists, writeFileAtomic } from "./fsutil.ts";
import { ALL, KvCore, type StoreOp, upgradeLegacyOps, userKey } from "./kv_core.ts";
import type { EntryResult } from "./kv_state_machine.ts";
import { MemoryStateMachine, MemoryStore } from "./memory_sm.ts";

const FILE = "sm-state.json";

interface StateJsonV1 {
  version: 1;
  appliedIndex: number;
  data: Array<[string, string]>;
}

interface StateJson {
  version: 2;
  appliedIndex: number;
  appliedLastChange?: number;
  records: Array<[string, string]>;
}

/** A state machine persisted as one JSON file. */
export class SimpleFileStateMachine extends MemoryStateMachine {
  readonly #dir: string;
  readonly #env: Env;

  private constructor(dir: string, env: Env) {
    super();
    this.#dir = dir;
    this.#env = env;
  }

  /** Opens (or creates) the state machine in `dir` (`env`: the file system, default the real one). */
  static async open(dir: string, opts: { env?: Env } = {}): Promise<SimpleFileStateMachine> {
    const env = opts.env ?? denoEnv;
    mkdirDurable(env, dir);
    const sm = new SimpleFileStateMachine(dir, env);
    const raw = readFileIfExists(env, join(dir, FILE));
    if (raw) {
      const store = new MemoryStore();
      try {
        const st: StateJson | StateJsonV1 = JSON.parse(new TextDecoder().decode(raw));
        const ops: StoreOp[] = [];
        if (st.version === 1) {
          for (const [k, v] of st.data) {
            ops.push({ type: "put", key: userKey(fromBase64(k)), value: fromBase64(v) });
          }
        } else if (st.version === 2) {
          for (const [k, v] of st.records) {
            ops.push({ type: "put", key: fromBase64(k), value: fromBase64(v) });
          }
        } else {
          throw new Error(`unknown version ${(st as { version: unknown }).version}`);
        }
        const lastChange = st.version === 2 ? st.appliedLastChange : undefined;
        if (
          lastChange !== undefined &&
          !(Number.isInteger(lastChange) && lastChange >= -1 && lastChange < 0xffff)
        ) {
          throw new Error(`appliedLastChange ${lastChange}`);
        }
        ops.push(KvCore.appliedOp(st.appliedIndex, lastChange));
        // A state file of an older version holds raw values: they become bytes records.
        store.write(upgradeLegacyOps(ops, st.appliedIndex));
      } catch (e) {
        throw new CorruptionError(FILE, 0, "json", String(e));
      }
      await sm.installStore(store);
    }
    return sm;
  }

  /** Applies, then persists the whole state. */
  override apply(cmds: ApplyCommand[]): Promise<EntryResult[]> {
    return this.serial(async () => {
      const out = await this.applyBatch(cmds);
      if (cmds.length > 0) this.#persist();
      return out;
    });
  }

  /** Restores, then persists the whole state. */
  override restore(data: Uint8Array, index: number): Promise<void> {
    return this.serial(async () => {
      await this.restoreStore(data, index);
      this.#persist();
    });
  }

  /** Persists an imported state. */
  protected override afterImport(): void {
    this.#persist();
  }

  #persist(): void {
    const records: Array<[string, string]> = [];
    for (const [k, v] of this.store.scanSync(ALL)) {
      if (k[0] === 0 && k[1] === 1) continue; // the applied index has its own field
      records.push([toBase64(k), toBase64(v)]);
    }
    const st: StateJson = { version: 2, appliedIndex: this.applied, records };
    if (this.appliedChange !== undefined) st.appliedLastChange = this.appliedChange;
    writeFileAtomic(
      this.#env,
      this.#dir,
      FILE,
      new TextEncoder().encode(JSON.stringify(st) + "\n"),
    );
  }

  /** The backend's name. */
  protected override backendName(): string {
    return "simplefile";
  }
}
