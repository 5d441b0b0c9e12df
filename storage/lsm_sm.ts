/**
 * The lsm {@link KvStateMachine}: data and client sessions in the LSM engine.
 *
 * Key layout inside the LSM (user scans never see the metadata):
 * - `0x01 ++ userKey` → value
 * - `0x00 0x01` → u64 applied index, written in the same batch as the commands it covers
 * - `0x00 0x02 ++ u64be clientId` → u64 lastSeq, u8 result (the session table)
 * - `0x00 0x03` → empty (written with `sync: true` to make earlier writes durable)
 *
 * Writes use `sync: false`: the Raft log is the write-ahead log, and after a crash the driver
 * replays it from {@link LsmStateMachine.appliedIndex}, which reports what the LSM really holds.
 * `snapshot()` makes the LSM durable up to the snapshot before returning (so a log compacted behind
 * it never needs entries the LSM lost).
 *
 * `restore()` builds the new state in a fresh LSM directory (`sm-<gen>`), makes it durable, then
 * switches the `SM_CURRENT` pointer file atomically and deletes the old directory: a crash leaves
 * either the old or the new state, never a mix.
 *
 * @module
 */
import { join } from "node:path";
import { LsmDb, type LsmOptions, type Snapshot as LsmSnapshot } from "../lsm/mod.ts";
import type { ApplyCommand } from "../raft/state_machine.ts";
import { ByteReader, ByteWriter, compareBytes, prefixEnd } from "./bytes.ts";
import { CommandOp } from "./command.ts";
import { CorruptionError, StoreClosedError } from "./errors.ts";
import {
  denoEnv,
  type Env,
  mkdirDurable,
  readFileIfExists,
  removeIfExists,
  writeFileAtomic,
} from "./fsutil.ts";
import {
  type ApplyResult,
  decodeResult,
  encodeResult,
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

const USER = 0x01;
const APPLIED_KEY = new Uint8Array([0x00, 0x01]);
const SYNC_KEY = new Uint8Array([0x00, 0x03]);
const SESSION_PREFIX = new Uint8Array([0x00, 0x02]);
const USER_LO = new Uint8Array([USER]);
const USER_HI = new Uint8Array([USER + 1]);
const CURRENT = "SM_CURRENT";
const RESTORE_BATCH = 1024;

type Op = { type: "put"; key: Uint8Array; value: Uint8Array } | {
  type: "delete";
  key: Uint8Array;
};

function userKey(k: Uint8Array): Uint8Array {
  const out = new Uint8Array(k.length + 1);
  out[0] = USER;
  out.set(k, 1);
  return out;
}

function sessionKey(id: bigint): Uint8Array {
  const out = new Uint8Array(SESSION_PREFIX.length + 8);
  out.set(SESSION_PREFIX);
  new DataView(out.buffer).setBigUint64(SESSION_PREFIX.length, id, false);
  return out;
}

function encodeSession(s: SessionEntry): Uint8Array {
  const w = new ByteWriter(16);
  w.u64(s.lastSeq);
  w.u8(encodeResult(s.lastResult));
  return w.finish();
}

function encodeU64(n: number): Uint8Array {
  const w = new ByteWriter(8);
  w.u64(n);
  return w.finish();
}

function genDir(gen: number): string {
  return `sm-${String(gen).padStart(6, "0")}`;
}

/** The readable side shared by a database and one of its snapshots. */
interface Readable {
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  scan(
    opts: { gte?: Uint8Array; lt?: Uint8Array; reverse?: boolean; limit?: number },
  ): AsyncIterable<[Uint8Array, Uint8Array]>;
}

async function readApplied(db: Readable): Promise<number> {
  const v = await db.get(APPLIED_KEY);
  return v ? new ByteReader(v, "applied index").u64() : 0;
}

async function readSessions(db: Readable): Promise<SessionTable> {
  const t: SessionTable = new Map();
  for await (const [k, v] of db.scan({ gte: SESSION_PREFIX, lt: prefixEnd(SESSION_PREFIX) })) {
    if (k.length !== SESSION_PREFIX.length + 8) {
      throw new CorruptionError("state machine", 0, "session key");
    }
    const id = new DataView(k.buffer, k.byteOffset, k.byteLength).getBigUint64(
      SESSION_PREFIX.length,
      false,
    );
    const r = new ByteReader(v, "session");
    t.set(id, { lastSeq: r.u64(), lastResult: decodeResult(r.u8()) });
  }
  return t;
}

/** Options of {@link LsmStateMachine.open}. */
export interface LsmStateMachineOptions {
  /** Options passed to the LSM engine. */
  lsm?: LsmOptions;
  /** Set as {@link LsmDb.onBackgroundWork} on every LSM database it opens (metrics). */
  onBackgroundWork?: LsmDb["onBackgroundWork"];
  /** The file system of the state machine's own files (default: the real one). */
  env?: Env;
}

/** A state machine stored in the LSM engine. */
export class LsmStateMachine implements KvStateMachine {
  readonly #dir: string;
  readonly #lsmOptions: LsmOptions;
  #onWork: LsmDb["onBackgroundWork"];
  readonly #env: Env;
  #gen: number;
  #db: LsmDb;
  #applied: number;
  #sessions: SessionTable;
  #closed = false;
  /** Serializes apply, snapshot and restore. */
  #tail: Promise<unknown> = Promise.resolve();
  #applies = 0;
  #restores = 0;
  /** Snapshot scans in progress (they read the LSM outside the apply queue). */
  readonly #reading = new Set<Promise<unknown>>();

  private constructor(
    dir: string,
    lsmOptions: LsmOptions,
    env: Env,
    gen: number,
    db: LsmDb,
    applied: number,
    sessions: SessionTable,
  ) {
    this.#dir = dir;
    this.#lsmOptions = lsmOptions;
    this.#env = env;
    this.#gen = gen;
    this.#db = db;
    this.#applied = applied;
    this.#sessions = sessions;
  }

  /** Opens (or creates) the state machine in `dir`. */
  static async open(dir: string, opts: LsmStateMachineOptions = {}): Promise<LsmStateMachine> {
    const env = opts.env ?? denoEnv;
    mkdirDurable(env, dir);
    const raw = readFileIfExists(env, join(dir, CURRENT));
    let gen = 1;
    if (raw) {
      const m = /^sm-(\d+)\s*$/.exec(new TextDecoder().decode(raw));
      if (!m) throw new CorruptionError(CURRENT, 0, "pointer");
      gen = Number(m[1]);
    } else {
      writeFileAtomic(env, dir, CURRENT, new TextEncoder().encode(genDir(gen) + "\n"));
    }
    // Remove directories of interrupted restores (or of the previous generation).
    for (const d of env.readDirSync(dir)) {
      if (d.isDirectory && /^sm-\d+$/.test(d.name) && d.name !== genDir(gen)) {
        env.removeSync(join(dir, d.name), { recursive: true });
      }
    }
    const lsmOptions = opts.lsm ?? {};
    const db = await LsmDb.open(join(dir, genDir(gen)), lsmOptions);
    db.onBackgroundWork = opts.onBackgroundWork;
    try {
      const applied = await readApplied(db);
      const sessions = await readSessions(db);
      const sm = new LsmStateMachine(dir, lsmOptions, env, gen, db, applied, sessions);
      sm.#onWork = opts.onBackgroundWork;
      return sm;
    } catch (e) {
      await db.close();
      throw e;
    }
  }

  /** See {@link KvStateMachine.appliedIndex}: what the LSM holds (or will after replay). */
  appliedIndex(): number {
    return this.#applied;
  }

  /** Runs `fn` after every earlier apply/snapshot/restore has finished. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => {
      this.#check();
      return fn();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  /** Applies commands in one LSM batch that also records the applied index (no sync). */
  apply(cmds: ApplyCommand[]): Promise<ApplyResult[]> {
    return this.#serial(() => this.#apply(cmds));
  }

  async #apply(cmds: ApplyCommand[]): Promise<ApplyResult[]> {
    if (cmds.length === 0) return [];
    const ops: Op[] = [];
    const out: ApplyResult[] = [];
    const touched = new Map<bigint, SessionEntry>();
    for (let i = 0; i < cmds.length; i++) {
      // An earlier command of this batch may have changed the session table.
      const plan = planApply(cmds[i].data, this.#sessions);
      if (plan.kind === "done") {
        out.push(plan.result);
        continue;
      }
      const cmd = plan.cmd;
      const uk = userKey(cmd.key);
      if (cmd.op === CommandOp.Put) ops.push({ type: "put", key: uk, value: cmd.value });
      else ops.push({ type: "delete", key: uk });
      const result = { ok: true as const };
      const s = recordSession(cmd, result, this.#sessions);
      if (s) touched.set(cmd.session!.clientId, s);
      out.push(result);
    }
    for (const [id, s] of touched) {
      ops.push({ type: "put", key: sessionKey(id), value: encodeSession(s) });
    }
    const applied = cmds[cmds.length - 1].index;
    ops.push({ type: "put", key: APPLIED_KEY, value: encodeU64(applied) });
    await this.#db.write(ops, { sync: false });
    this.#applied = applied;
    this.#applies += cmds.length;
    return out;
  }

  /** See {@link KvStateMachine.get}. */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.#check();
    return this.#db.get(userKey(key));
  }

  /** See {@link KvStateMachine.scan}. Runs on one LSM snapshot. */
  async scan(opts: ScanOptions = {}): Promise<Array<[Uint8Array, Uint8Array]>> {
    this.#check();
    let lo = opts.start ? userKey(opts.start) : USER_LO;
    let hi = opts.end ? userKey(opts.end) : USER_HI;
    if (opts.prefix) {
      const p = userKey(opts.prefix);
      if (compareBytes(p, lo) > 0) lo = p;
      const pe = prefixEnd(p) ?? USER_HI;
      if (compareBytes(pe, hi) < 0) hi = pe;
    }
    const out: Array<[Uint8Array, Uint8Array]> = [];
    const limit = opts.limit ?? Infinity;
    const maxBytes = opts.maxBytes ?? Infinity;
    let bytes = 0;
    if (limit <= 0 || compareBytes(lo, hi) >= 0) return out;
    for await (
      const [k, v] of this.#db.scan({
        gte: lo,
        lt: hi,
        reverse: opts.reverse ?? false,
        limit: Number.isFinite(limit) ? limit : undefined,
      })
    ) {
      out.push([k.subarray(1), v]);
      bytes += k.length - 1 + v.length;
      if (out.length >= limit || bytes > maxBytes) break;
    }
    return out;
  }

  /** See {@link KvStateMachine.sessions}. */
  sessions(): ReadonlyMap<bigint, SessionEntry> {
    return this.#sessions;
  }

  /**
   * Serializes a consistent LSM snapshot (data, sessions and applied index read from it), after
   * making the LSM durable up to it.
   */
  snapshot(): Promise<Uint8Array> {
    // Only the durable point and the LSM snapshot are taken in the apply queue; the scan runs
    // on that consistent view while later commands are applied.
    const p = this.#serial(() => this.#beginSnapshot()).then((snap) => this.#readSnapshot(snap));
    const tracked = p.catch(() => {}).finally(() => this.#reading.delete(tracked));
    this.#reading.add(tracked);
    return p;
  }

  /** Waits for snapshot scans still reading the current LSM. */
  async #readsDone(): Promise<void> {
    while (this.#reading.size > 0) await Promise.all([...this.#reading]);
  }

  async #beginSnapshot(): Promise<LsmSnapshot> {
    await this.#db.write([{ type: "put", key: SYNC_KEY, value: new Uint8Array(0) }], {
      sync: true,
    });
    return this.#db.snapshot();
  }

  async #readSnapshot(snap: LsmSnapshot): Promise<Uint8Array> {
    try {
      const applied = await readApplied(snap);
      const w = new SnapshotWriter(applied, await readSessions(snap));
      for await (const [k, v] of snap.scan({ gte: USER_LO, lt: USER_HI })) w.add(k.subarray(1), v);
      return w.finish();
    } finally {
      snap.release();
    }
  }

  /**
   * See {@link KvStateMachine.exportState}: an LSM snapshot taken in the apply queue after making
   * the LSM durable up to it; its keys are read block by block as they are consumed, while later
   * commands are applied.
   */
  exportState(): Promise<StateExport> {
    return this.#serial(() => this.#beginSnapshot()).then(async (snap) => {
      let done!: () => void;
      const tracked = new Promise<void>((r) => done = r).finally(() =>
        this.#reading.delete(tracked)
      );
      this.#reading.add(tracked);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        snap.release();
        done();
      };
      try {
        const appliedIndex = await readApplied(snap);
        const sessions = await readSessions(snap);
        return {
          appliedIndex,
          sessions,
          async *entries(): AsyncGenerator<StateEntry> {
            for await (const [k, v] of snap.scan({ gte: USER_LO, lt: USER_HI })) {
              yield { key: k.subarray(1), value: v };
            }
          },
          release,
        };
      } catch (e) {
        release();
        throw e;
      }
    });
  }

  /** Replaces everything with a snapshot taken at `index` (atomic switch to a new LSM). */
  restore(data: Uint8Array, index: number): Promise<void> {
    return this.#serial(() => {
      const content = readSnapshot(data);
      return this.#import({
        appliedIndex: index,
        sessions: content.sessions,
        entries: (async function* () {
          for (const [key, value] of content.entries()) yield { key, value };
        })(),
      });
    });
  }

  /** See {@link KvStateMachine.importState}: the same atomic switch as {@link restore}. */
  importState(src: StateImport): Promise<void> {
    return this.#serial(() => this.#import(src));
  }

  async #import(src: StateImport): Promise<void> {
    const gen = this.#gen + 1;
    const path = join(this.#dir, genDir(gen));
    removeIfExists(this.#env, path, true);
    const db = await LsmDb.open(path, this.#lsmOptions);
    db.onBackgroundWork = this.#onWork;
    try {
      let ops: Op[] = [];
      for await (const e of src.entries) {
        ops.push({ type: "put", key: userKey(e.key), value: e.value });
        if (ops.length >= RESTORE_BATCH) {
          await db.write(ops, { sync: false });
          ops = [];
        }
      }
      for (const [id, s] of src.sessions) {
        ops.push({ type: "put", key: sessionKey(id), value: encodeSession(s) });
      }
      ops.push({ type: "put", key: APPLIED_KEY, value: encodeU64(src.appliedIndex) });
      await db.write(ops, { sync: false });
      await db.flush();
      await db.write([{ type: "put", key: SYNC_KEY, value: new Uint8Array(0) }], { sync: true });
    } catch (e) {
      await db.close();
      removeIfExists(this.#env, path, true);
      throw e;
    }
    writeFileAtomic(this.#env, this.#dir, CURRENT, new TextEncoder().encode(genDir(gen) + "\n"));
    const old = this.#db;
    const oldPath = join(this.#dir, genDir(this.#gen));
    this.#db = db;
    this.#gen = gen;
    this.#applied = src.appliedIndex;
    this.#sessions = new Map(src.sessions);
    this.#restores++;
    await this.#readsDone();
    await old.close();
    removeIfExists(this.#env, oldPath, true);
  }

  /** See {@link KvStateMachine.stats}. */
  stats(): Record<string, unknown> {
    let lsm: unknown;
    try {
      lsm = this.#db.stats();
    } catch {
      lsm = undefined;
    }
    return {
      backend: "lsm",
      appliedIndex: this.#applied,
      sessions: this.#sessions.size,
      applied: this.#applies,
      restores: this.#restores,
      generation: this.#gen,
      lsm,
    };
  }

  /** Closes the LSM. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#tail;
    this.#closed = true;
    await this.#readsDone();
    await this.#db.close();
  }

  #check(): void {
    if (this.#closed) throw new StoreClosedError("lsm state machine");
  }
}
