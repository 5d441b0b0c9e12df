/**
 * The simplefile {@link LogStore}: human-readable JSON, correct before fast.
 *
 * Files in the directory:
 * - `raft-state.json` — hard state, snapshot metadata and the name of the live log file; always
 *   replaced atomically (temporary file, fsync, rename, directory fsync). It is the commit point.
 * - `raft-log-<gen>.jsonl` — the entries, one JSON object per line, only ever appended to
 *   (`{"index":1,"term":1,"type":0,"data":"<base64>"}`). A later line with a lower or equal index
 *   replaces the suffix from that index (log truncation).
 * - `raft-snapshot-<index>.json` — the latest snapshot: `{"meta":{...},"data":"<base64>"}`.
 *
 * Installing or creating a snapshot starts a new log generation holding only the entries after
 * it, then commits through `raft-state.json`; the old generation and snapshot are then deleted.
 * A torn last line (crash during an append) is cut off on open; a bad line followed by good ones is
 * a {@link CorruptionError}.
 *
 * @module
 */
import { join } from "node:path";
import type { LogStore } from "../raft/storage.ts";
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
} from "../raft/types.ts";
import { fromBase64, toBase64 } from "./bytes.ts";
import { CorruptionError, LogGapError, StorageIoError, StoreClosedError } from "./errors.ts";
import {
  denoEnv,
  type DirLock,
  type Env,
  type EnvFile,
  fsyncDir,
  lockDir,
  mkdirDurable,
  readFileIfExists,
  removeIfExists,
  writeFileAtomic,
  writeFully,
} from "./fsutil.ts";
import { settle } from "./settle.ts";
import { cloneConf, cloneMeta, LogCoreReads } from "./log_core.ts";

const STATE_FILE = "raft-state.json";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Snapshot metadata as JSON: member contexts in base64 (absent when there are none). */
interface MetaJson {
  index: number;
  term: number;
  conf: ConfState;
  memberContexts?: { id: number; context: string }[];
}

interface StateJson {
  version: 1;
  hardState: HardState;
  snapshot: MetaJson;
  logFile: string;
}

function metaJson(m: SnapshotMeta): MetaJson {
  const o: MetaJson = { index: m.index, term: m.term, conf: m.conf };
  if (m.memberContexts && m.memberContexts.length > 0) {
    o.memberContexts = m.memberContexts.map((c) => ({ id: c.id, context: toBase64(c.context) }));
  }
  return o;
}

/** Reads {@link metaJson}'s output; a state file written before member contexts has none. */
function parseMeta(o: MetaJson): SnapshotMeta {
  const meta: SnapshotMeta = { index: o.index, term: o.term, conf: parseConf(o.conf) };
  if (o.memberContexts !== undefined) {
    if (
      !Array.isArray(o.memberContexts) ||
      o.memberContexts.some((c) => !Number.isSafeInteger(c?.id) || typeof c.context !== "string")
    ) throw new CorruptionError(STATE_FILE, 0, "member contexts");
    if (o.memberContexts.length > 0) {
      meta.memberContexts = o.memberContexts.map((c) => ({
        id: c.id,
        context: fromBase64(c.context),
      }));
    }
  }
  return meta;
}

function logName(gen: number): string {
  return `raft-log-${String(gen).padStart(6, "0")}.jsonl`;
}

function snapName(index: number): string {
  return `raft-snapshot-${String(index).padStart(20, "0")}.json`;
}

function entryLine(e: Entry): string {
  return JSON.stringify({ index: e.index, term: e.term, type: e.type, data: toBase64(e.data) }) +
    "\n";
}

function parseEntry(line: string): Entry | undefined {
  try {
    const o = JSON.parse(line);
    if (
      typeof o !== "object" || o === null || !Number.isSafeInteger(o.index) ||
      !Number.isSafeInteger(o.term) || (o.type !== EntryType.Normal &&
        o.type !== EntryType.ConfChange) ||
      typeof o.data !== "string"
    ) return undefined;
    return { index: o.index, term: o.term, type: o.type, data: fromBase64(o.data) };
  } catch {
    return undefined;
  }
}

function parseConf(c: ConfState): ConfState {
  return cloneConf({
    voters: c?.voters ?? [],
    votersOutgoing: c?.votersOutgoing ?? [],
    learners: c?.learners ?? [],
    learnersNext: c?.learnersNext ?? [],
  });
}

/** A Raft log kept in JSON files (see the module documentation for the layout). */
export class SimpleFileLogStore extends LogCoreReads implements LogStore {
  readonly #dir: string;
  #gen = 1;
  readonly #env: Env;
  #file: EnvFile | null = null;
  /** Set by the first failed I/O: the store is unusable from then on. */
  #failed: StorageIoError | null = null;
  #pending = "";
  #hsDirty = false;
  /** A snapshot installed or created since the last sync, with its data. */
  #pendingSnap: Snapshot | null = null;
  #closed = false;
  #lock: DirLock | null = null;

  private constructor(dir: string, env: Env) {
    super();
    this.#dir = dir;
    this.#env = env;
  }

  /** Opens (or creates) the log in `dir` (`env`: the file system, default the real one). */
  static open(dir: string, opts: { env?: Env } = {}): Promise<SimpleFileLogStore> {
    return settle(() => SimpleFileLogStore.#openSync(dir, opts.env ?? denoEnv));
  }

  static #openSync(dir: string, env: Env): SimpleFileLogStore {
    mkdirDurable(env, dir);
    const s = new SimpleFileLogStore(dir, env);
    s.#lock = lockDir(env, dir);
    try {
      s.#load();
    } catch (e) {
      s.#file?.close();
      s.#lock.release();
      throw e;
    }
    return s;
  }

  #load(): void {
    const env = this.#env;
    const raw = readFileIfExists(env, join(this.#dir, STATE_FILE));
    let logFile = logName(1);
    if (raw) {
      let st: StateJson;
      try {
        st = JSON.parse(dec.decode(raw));
      } catch (e) {
        throw new CorruptionError(STATE_FILE, 0, "json", String(e));
      }
      this.core.hs = {
        term: st.hardState.term,
        vote: st.hardState.vote,
        commit: st.hardState.commit,
      };
      this.core.snap = parseMeta(st.snapshot);
      logFile = st.logFile;
      const m = /^raft-log-(\d+)\.jsonl$/.exec(logFile);
      if (!m) throw new CorruptionError(STATE_FILE, 0, "log file name", logFile);
      this.#gen = Number(m[1]);
      if (
        this.core.snap.index > 0 &&
        !readFileIfExists(env, join(this.#dir, snapName(this.core.snap.index)))
      ) {
        throw new CorruptionError(snapName(this.core.snap.index), 0, "missing snapshot");
      }
    }
    this.#replay(logFile);
    // Leftovers of an interrupted snapshot switch.
    for (const d of env.readDirSync(this.#dir)) {
      const stale = (d.name.startsWith("raft-log-") && d.name !== logFile) ||
        (d.name.startsWith("raft-snapshot-") && d.name !== snapName(this.core.snap.index)) ||
        d.name.endsWith(".tmp");
      if (stale && d.name.startsWith("raft-")) removeIfExists(env, join(this.#dir, d.name));
    }
    const path = join(this.#dir, logFile);
    const created = readFileIfExists(env, path) === undefined;
    this.#file = env.openSync(path, { write: true, create: true, append: true });
    if (created) fsyncDir(this.#dir, env);
  }

  #replay(logFile: string): void {
    const path = join(this.#dir, logFile);
    const raw = readFileIfExists(this.#env, path);
    if (!raw) return;
    const text = dec.decode(raw);
    let pos = 0;
    let lineNo = 0;
    let cut = -1;
    while (pos < text.length) {
      const nl = text.indexOf("\n", pos);
      const line = nl < 0 ? text.slice(pos) : text.slice(pos, nl);
      const e = nl < 0 ? undefined : parseEntry(line);
      lineNo++;
      if (!e) {
        // Torn tail unless a good line follows.
        const rest = nl < 0 ? "" : text.slice(nl + 1);
        if (rest.split("\n").some((l) => parseEntry(l) !== undefined)) {
          throw new CorruptionError(logFile, lineNo, "bad line");
        }
        cut = pos;
        break;
      }
      try {
        this.core.append([e]);
      } catch (err) {
        if (err instanceof LogGapError) throw new CorruptionError(logFile, lineNo, "gap");
        throw err;
      }
      pos = nl + 1;
    }
    if (cut >= 0) {
      const bytes = enc.encode(text.slice(0, cut)).length;
      const f = this.#env.openSync(path, { write: true });
      try {
        f.truncateSync(bytes);
        f.syncDataSync();
      } finally {
        f.close();
      }
    }
  }

  /** See {@link LogStore.snapshot}. */
  snapshot(): Snapshot {
    if (this.#pendingSnap) {
      return { meta: cloneMeta(this.core.snap), data: this.#pendingSnap.data };
    }
    if (this.core.snap.index === 0) {
      return { meta: cloneMeta(this.core.snap), data: new Uint8Array(0) };
    }
    const name = snapName(this.core.snap.index);
    const raw = readFileIfExists(this.#env, join(this.#dir, name));
    if (!raw) throw new CorruptionError(name, 0, "missing snapshot");
    const o = JSON.parse(dec.decode(raw));
    return { meta: cloneMeta(this.core.snap), data: fromBase64(o.data) };
  }

  /** See {@link LogStore.append}. */
  append(entries: Entry[]): void {
    this.#check();
    for (const e of this.core.append(entries)) this.#pending += entryLine(e);
  }

  /** See {@link LogStore.setHardState}. */
  setHardState(hs: HardState): void {
    this.#check();
    this.core.hs = { term: hs.term, vote: hs.vote, commit: hs.commit };
    this.#hsDirty = true;
  }

  /** See {@link LogStore.applySnapshot}. */
  applySnapshot(snap: Snapshot): void {
    this.#check();
    if (this.core.install(snap.meta) !== undefined) this.#pendingSnap = snap;
  }

  /** See {@link LogStore.createSnapshot}. */
  createSnapshot(snap: Snapshot): void {
    this.#check();
    if (this.core.compact(snap.meta)) this.#pendingSnap = snap;
  }

  /** Makes everything recorded so far durable. */
  sync(): Promise<void> {
    return settle(() => this.#syncNow());
  }

  /** Writes and syncs; any I/O failure fails the store for good (see {@link StorageIoError}). */
  #syncNow(): void {
    this.#check();
    try {
      this.#syncUnchecked();
    } catch (e) {
      this.#failed = e instanceof StorageIoError
        ? e
        : new StorageIoError("simplefile log", "sync", e);
      throw this.#failed;
    }
  }

  #syncUnchecked(): void {
    if (this.#pendingSnap) this.#switchGeneration(this.#pendingSnap);
    else {
      if (this.#pending) {
        // A failed write fails the store: nothing is ever written after a partial line.
        writeFully(this.#file!, enc.encode(this.#pending));
        this.#file!.syncDataSync();
        this.#pending = "";
      }
      if (this.#hsDirty) this.#writeState(logName(this.#gen));
    }
  }

  #writeState(logFile: string): void {
    const st: StateJson = {
      version: 1,
      hardState: this.core.hs,
      snapshot: metaJson(this.core.snap),
      logFile,
    };
    writeFileAtomic(
      this.#env,
      this.#dir,
      STATE_FILE,
      enc.encode(JSON.stringify(st, null, 2) + "\n"),
    );
    this.#hsDirty = false;
  }

  /** Writes a new log generation with the live entries, the snapshot, then the state. */
  #switchGeneration(snap: Snapshot): void {
    const oldLog = logName(this.#gen);
    const newLog = logName(this.#gen + 1);
    const lines = this.core.ents.map(entryLine).join("");
    const env = this.#env;
    writeFileAtomic(env, this.#dir, newLog, enc.encode(lines));
    const meta = this.core.snap;
    writeFileAtomic(
      env,
      this.#dir,
      snapName(meta.index),
      enc.encode(JSON.stringify({ meta: metaJson(meta), data: toBase64(snap.data) }) + "\n"),
    );
    this.#writeState(newLog);
    this.#file!.close();
    this.#gen++;
    this.#file = env.openSync(join(this.#dir, newLog), { write: true, append: true });
    this.#pending = "";
    this.#pendingSnap = null;
    removeIfExists(env, join(this.#dir, oldLog));
    for (const d of env.readDirSync(this.#dir)) {
      if (d.name.startsWith("raft-snapshot-") && d.name !== snapName(meta.index)) {
        removeIfExists(env, join(this.#dir, d.name));
      }
    }
    fsyncDir(this.#dir, env);
  }

  /** Syncs and closes the files. */
  close(): Promise<void> {
    return settle(() => {
      if (this.#closed) return;
      try {
        if (!this.#failed) this.#syncNow();
      } finally {
        this.#closed = true;
        this.#file?.close();
        this.#file = null;
        this.#lock?.release();
        this.#lock = null;
      }
    });
  }

  #check(): void {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new StoreClosedError("simplefile log store");
  }
}
