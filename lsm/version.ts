/**
 * Versions (the set of live table files per level) and the VersionSet that
 * persists edits to the MANIFEST log and the CURRENT pointer.
 * @module
 */
import { CorruptionError, LsmError } from "./errors.ts";
import { denoEnv, type Env, writeFileAtomicSync } from "./env.ts";
import { currentPath, manifestPath } from "./filenames.ts";
import { compareInternal, compareUserToInternal } from "./internal_key.ts";
import { isV1Log, readLog } from "./log_reader.ts";
import { LogWriter } from "./log_writer.ts";
import {
  decodeEdit,
  EditFormatError,
  encodeEdit,
  type FileMeta,
  NUM_LEVELS,
  type VersionEdit,
} from "./version_edit.ts";

/** An immutable set of table files per level. */
export class Version {
  /** Open iterators/compactions holding this version. */
  refs = 0;
  constructor(readonly levels: FileMeta[][]) {}

  /** Total bytes in `level`. */
  levelBytes(level: number): number {
    let n = 0;
    for (const f of this.levels[level]) n += f.size;
    return n;
  }

  /** Files of `level` whose user-key range intersects [lo, hi] (undefined = unbounded). */
  overlapping(level: number, lo?: Uint8Array, hi?: Uint8Array): FileMeta[] {
    return this.levels[level].filter((f) =>
      (lo === undefined || compareUserToInternal(lo, f.largest) <= 0) &&
      (hi === undefined || compareUserToInternal(hi, f.smallest) >= 0)
    );
  }

  /** Index of the first file in sorted `level` (>= 1) whose largest user key >= key. */
  findFile(level: number, key: Uint8Array): number {
    const files = this.levels[level];
    let lo = 0;
    let hi = files.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareUserToInternal(key, files[mid].largest) > 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Applies an edit to `base`, returning a new version. */
export function applyEdit(base: Version, e: VersionEdit): Version {
  const levels = base.levels.map((l) => l.slice());
  if (e.deletedFiles) {
    for (const [l, n] of e.deletedFiles) levels[l] = levels[l].filter((f) => f.number !== n);
  }
  if (e.newFiles) { for (const [l, f] of e.newFiles) levels[l].push(f); }
  levels[0].sort((a, b) => a.number - b.number);
  for (let l = 1; l < NUM_LEVELS; l++) {
    levels[l].sort((a, b) => compareInternal(a.smallest, b.smallest));
  }
  return new Version(levels);
}

/** Persistent version state: current version, counters and live WALs. */
export class VersionSet {
  current: Version = new Version(Array.from({ length: NUM_LEVELS }, () => []));
  logNumber = 0;
  nextFileNumber = 2;
  lastSequence = 0;
  /** Live WAL numbers (>= logNumber). */
  wals: number[] = [];
  manifestNumber = 0;
  private manifest: LogWriter | undefined;

  constructor(readonly dir: string, private readonly env: Env = denoEnv) {}

  /** Allocates a file number. */
  newFileNumber(): number {
    return this.nextFileNumber++;
  }

  private applyCounters(e: VersionEdit): void {
    if (e.logNumber !== undefined) this.logNumber = e.logNumber;
    if (e.nextFileNumber !== undefined) {
      this.nextFileNumber = Math.max(this.nextFileNumber, e.nextFileNumber);
    }
    if (e.lastSequence !== undefined) {
      this.lastSequence = Math.max(this.lastSequence, e.lastSequence);
    }
    if (e.addWals) this.wals.push(...e.addWals);
    this.wals = this.wals.filter((n) => n >= this.logNumber).sort((a, b) => a - b);
  }

  /**
   * Loads state from CURRENT and its manifest. Returns false when the
   * directory holds no database (no CURRENT).
   */
  recover(): boolean {
    const cur = currentPath(this.dir);
    let text: string;
    try {
      text = new TextDecoder().decode(this.env.readFileSync(cur));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
    const m = /^MANIFEST-(\d+)\n$/.exec(text);
    if (!m) throw new CorruptionError(cur, 0, "CURRENT does not name a manifest");
    this.manifestNumber = Number(m[1]);
    const path = manifestPath(this.dir, this.manifestNumber);
    let data: Uint8Array;
    try {
      data = this.env.readFileSync(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new CorruptionError(path, 0, "manifest missing");
      throw e;
    }
    if (isV1Log(data)) {
      throw new LsmError(
        "UNSUPPORTED_FORMAT",
        `${path} is in record-log format 1 (gokv before the fragment header checksum); ` +
          "this version reads format 2 only: export the data with the old version and import it",
      );
    }
    let v = this.current;
    let records = 0;
    readLog(data, path, (rec, off) => {
      let e: VersionEdit;
      try {
        e = decodeEdit(rec);
      } catch (err) {
        if (err instanceof EditFormatError) throw new CorruptionError(path, off, err.message);
        throw err;
      }
      if (e.deletedFiles) {
        for (const [l, n] of e.deletedFiles) {
          if (!v.levels[l].some((f) => f.number === n)) {
            throw new CorruptionError(path, off, `edit deletes unknown file ${n} at L${l}`);
          }
        }
      }
      v = applyEdit(v, e);
      this.applyCounters(e);
      records++;
    });
    if (records === 0) throw new CorruptionError(path, 0, "manifest holds no edits");
    this.current = v;
    for (const l of v.levels) {
      for (const f of l) if (f.number >= this.nextFileNumber) this.nextFileNumber = f.number + 1;
    }
    for (const w of this.wals) if (w >= this.nextFileNumber) this.nextFileNumber = w + 1;
    return true;
  }

  /**
   * Starts a fresh manifest holding the full state after `edit`, points
   * CURRENT at it (temp + rename + directory fsync) and returns the old
   * manifest number (now obsolete).
   */
  writeNewManifest(edit: VersionEdit): number {
    const v = applyEdit(this.current, edit);
    this.applyCounters(edit);
    const old = this.manifestNumber;
    const num = this.newFileNumber();
    const path = manifestPath(this.dir, num);
    const snap: VersionEdit = {
      logNumber: this.logNumber,
      nextFileNumber: this.nextFileNumber,
      lastSequence: this.lastSequence,
      addWals: this.wals.slice(),
      newFiles: [],
    };
    v.levels.forEach((files, l) => files.forEach((f) => snap.newFiles!.push([l, f])));
    const file = this.env.openSync(path, { write: true, create: true, truncate: true });
    const w = new LogWriter(file, path);
    try {
      w.addRecord(encodeEdit(snap));
      w.syncSync();
      writeFileAtomicSync(
        this.env,
        currentPath(this.dir),
        new TextEncoder().encode(`MANIFEST-${String(num).padStart(6, "0")}\n`),
      );
    } catch (e) {
      w.abandon();
      throw e;
    }
    this.manifest?.close();
    this.manifest = w;
    this.manifestNumber = num;
    this.current = v;
    return old;
  }

  /** Size of the manifest in bytes. */
  get manifestBytes(): number {
    return this.manifest?.written ?? 0;
  }

  /** Appends `edit` to the manifest durably, then installs the resulting version. */
  logAndApply(edit: VersionEdit): Version {
    if (!this.manifest) throw new Error("manifest not open");
    edit.nextFileNumber = this.nextFileNumber;
    const v = applyEdit(this.current, edit);
    this.manifest.addRecord(encodeEdit(edit));
    this.manifest.syncSync();
    this.applyCounters(edit);
    this.current = v;
    return v;
  }

  /** Closes the manifest file. */
  close(): void {
    this.manifest?.close();
    this.manifest = undefined;
  }
}
