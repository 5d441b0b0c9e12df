/**
 * The simplefile {@link KvStateMachine}: the memory state machine whose whole state is written
 * as human-readable JSON (`sm-state.json`, temporary file + fsync + rename) after every `apply()`
 * and `restore()`. Correct before fast: the file always holds a consistent state and its applied
 * index, so after a crash the driver replays the log from there.
 *
 * ```json
 * { "version": 1, "appliedIndex": 42,
 *   "sessions": [{ "clientId": "123", "lastSeq": 7 }],
 *   "data": [["<key base64>", "<value base64>"]] }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import type { ApplyCommand } from "../raft/state_machine.ts";
import { fromBase64, latin1ToBytes, toBase64 } from "./bytes.ts";
import { CorruptionError } from "./errors.ts";
import { denoEnv, type Env, mkdirDurable, readFileIfExists, writeFileAtomic } from "./fsutil.ts";
import type { ApplyResult, SessionTable } from "./kv_state_machine.ts";
import { MemoryStateMachine, OrderedBytesMap } from "./memory_sm.ts";
import { settle } from "./settle.ts";

const FILE = "sm-state.json";

interface StateJson {
  version: 1;
  appliedIndex: number;
  sessions: Array<{ clientId: string; lastSeq: number }>;
  data: Array<[string, string]>;
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
  static open(dir: string, opts: { env?: Env } = {}): Promise<SimpleFileStateMachine> {
    return settle(() => SimpleFileStateMachine.#openSync(dir, opts.env ?? denoEnv));
  }

  static #openSync(dir: string, env: Env): SimpleFileStateMachine {
    mkdirDurable(env, dir);
    const sm = new SimpleFileStateMachine(dir, env);
    const raw = readFileIfExists(env, join(dir, FILE));
    if (raw) {
      try {
        const st: StateJson = JSON.parse(new TextDecoder().decode(raw));
        const data = new OrderedBytesMap();
        for (const [k, v] of st.data) data.set(fromBase64(k), fromBase64(v));
        const sessions: SessionTable = new Map();
        for (const s of st.sessions) {
          sessions.set(BigInt(s.clientId), {
            lastSeq: s.lastSeq,
            lastResult: { ok: true },
          });
        }
        sm.data = data;
        sm.sessionTable = sessions;
        sm.applied = st.appliedIndex;
      } catch (e) {
        throw new CorruptionError(FILE, 0, "json", String(e));
      }
    }
    return sm;
  }

  /** Applies, then persists the whole state. */
  override apply(cmds: ApplyCommand[]): Promise<ApplyResult[]> {
    return settle(() => {
      const out = this.applySync(cmds);
      if (cmds.length > 0) this.#persist();
      return out;
    });
  }

  /** Restores, then persists the whole state. */
  override restore(data: Uint8Array, index: number): Promise<void> {
    return settle(() => {
      this.check();
      this.restoreSync(data, index);
      this.#persist();
    });
  }

  /** Persists an imported state. */
  protected override afterImport(): void {
    this.#persist();
  }

  #persist(): void {
    const st: StateJson = {
      version: 1,
      appliedIndex: this.applied,
      sessions: [...this.sessionTable].map(([id, s]) => ({
        clientId: id.toString(),
        lastSeq: s.lastSeq,
      })),
      data: this.data.sortedKeys().map((k) => [
        toBase64(latin1ToBytes(k)),
        toBase64(this.data.map.get(k)!),
      ]),
    };
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
