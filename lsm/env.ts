/**
 * The file-system interface of the engine (LevelDB's `Env` is the model).
 *
 * Every byte the engine (and storage/) reads or writes goes through an
 * {@linkcode Env}, so tests can swap the real file system ({@linkcode denoEnv})
 * for the fault-injecting in-memory one of `fault_env.ts`, which simulates
 * power loss (drops what was not fdatasynced / directory-fsynced) and EIO.
 *
 * The operations are synchronous, like the `*Sync` calls of Deno they wrap,
 * except {@linkcode EnvFile.syncData}, which runs fdatasync off the main thread.
 * Errors are Deno's (`Deno.errors.NotFound`, `Deno.errors.AlreadyExists`, ...)
 * so callers test them with `instanceof` whatever the env.
 *
 * Durability contract (what a crash keeps), as on Linux/ext4:
 * - file content written and then `syncDataSync()`/`syncData()` survives;
 * - a created, renamed or removed directory entry survives only once its
 *   directory was fsynced with {@linkcode Env.syncDirSync};
 * - anything else may be lost, and the last unsynced write may be torn.
 * @module
 */

/** How {@linkcode Env.openSync} opens a file. */
export interface OpenOptions {
  /** Open for reading. */
  read?: boolean;
  /** Open for writing. */
  write?: boolean;
  /** Create the file when missing (needs `write`). */
  create?: boolean;
  /** Truncate to zero length on open (needs `write`). */
  truncate?: boolean;
  /** Every write goes to the end of the file. */
  append?: boolean;
}

/** What {@linkcode Env.statSync} reports. */
export interface FileInfo {
  /** Size in bytes (0 for directories). */
  size: number;
  /** A regular file. */
  isFile: boolean;
  /** A directory. */
  isDirectory: boolean;
}

/** One entry of {@linkcode Env.readDirSync}. */
export interface DirEntry {
  /** Name inside the directory. */
  name: string;
  /** A regular file. */
  isFile: boolean;
  /** A directory. */
  isDirectory: boolean;
}

/** An open file. Writes go to the current position (the end when opened with `append`). */
export interface EnvFile {
  /**
   * Reads up to `buf.length` bytes at byte offset `pos`; returns how many were
   * read (0 at end of file). Does not move the write position.
   */
  readAtSync(buf: Uint8Array, pos: number): number;
  /** Writes at the current position; returns how many bytes were written (may be short). */
  writeSync(data: Uint8Array): number;
  /** Cuts (or zero-extends) the file to `len` bytes; the position moves to `len`. */
  truncateSync(len: number): void;
  /** Current size in bytes. */
  sizeSync(): number;
  /** fdatasync: makes the file's content durable. */
  syncDataSync(): void;
  /** fdatasync on a worker thread. */
  syncData(): Promise<void>;
  /** Closes the handle. */
  close(): void;
}

/** A held exclusive lock (see {@linkcode Env.tryLockSync}). */
export interface EnvLock {
  /** Releases the lock. */
  release(): void;
}

/** The file-system operations used by lsm/ and storage/. */
export interface Env {
  /** Opens (or creates) a file. */
  openSync(path: string, opts: OpenOptions): EnvFile;
  /** Reads a whole file. */
  readFileSync(path: string): Uint8Array;
  /** Renames (atomically replacing `to`). Durable after a directory fsync. */
  renameSync(from: string, to: string): void;
  /** Removes a file or (with `recursive`) a directory tree. */
  removeSync(path: string, opts?: { recursive?: boolean }): void;
  /** Lists a directory (order unspecified). */
  readDirSync(path: string): DirEntry[];
  /** Size and kind of a path; throws `Deno.errors.NotFound` when missing. */
  statSync(path: string): FileInfo;
  /** Creates a directory (with `recursive`, its missing parents, and no error if it exists). */
  mkdirSync(path: string, opts?: { recursive?: boolean }): void;
  /** fsyncs a directory, making creations, renames and removals in it durable. */
  syncDirSync(path: string): void;
  /**
   * Takes an exclusive advisory lock on the file `path` (created when
   * missing), or returns undefined when another holder has it. The lock
   * dies with the process.
   */
  tryLockSync(path: string): EnvLock | undefined;
}

/** The parent directory of `path` ("." for a bare name). */
export function parentDir(path: string): string {
  const p = path.replace(/\/+$/, "");
  const i = p.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : p.slice(0, i);
}

/**
 * Creates `dir` and its missing parents durably: each directory created is
 * made durable by an fsync of its parent.
 */
export function mkdirDurable(env: Env, dir: string): void {
  const missing: string[] = [];
  let d = dir.replace(/\/+$/, "") || "/";
  for (;;) {
    try {
      if (!env.statSync(d).isDirectory) {
        throw new Deno.errors.AlreadyExists(`${d} exists and is not a directory`);
      }
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    missing.push(d);
    const p = parentDir(d);
    if (p === d) break;
    d = p;
  }
  for (let i = missing.length - 1; i >= 0; i--) {
    try {
      env.mkdirSync(missing[i]);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    env.syncDirSync(parentDir(missing[i]));
  }
}

/** Writes all of `data` at the file's position (repeating short writes). */
export function writeFully(f: EnvFile, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += f.writeSync(data.subarray(off));
}

/**
 * Writes `data` to `path` atomically and durably: `path.tmp`, fdatasync,
 * rename over `path`, fsync of the directory.
 */
export function writeFileAtomicSync(env: Env, path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp`;
  const f = env.openSync(tmp, { write: true, create: true, truncate: true });
  try {
    writeFully(f, data);
    f.syncDataSync();
  } finally {
    f.close();
  }
  env.renameSync(tmp, path);
  env.syncDirSync(parentDir(path));
}

class DenoFile implements EnvFile {
  constructor(private readonly f: Deno.FsFile, private readonly writable: boolean) {}
  readAtSync(buf: Uint8Array, pos: number): number {
    this.f.seekSync(pos, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = this.f.readSync(buf.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    // Keep the write position at the end: the engine's writers only append.
    if (this.writable) this.f.seekSync(0, Deno.SeekMode.End);
    return got;
  }
  writeSync(data: Uint8Array): number {
    return this.f.writeSync(data);
  }
  truncateSync(len: number): void {
    this.f.truncateSync(len);
    this.f.seekSync(len, Deno.SeekMode.Start);
  }
  sizeSync(): number {
    return this.f.statSync().size;
  }
  syncDataSync(): void {
    this.f.syncDataSync();
  }
  syncData(): Promise<void> {
    return this.f.syncData();
  }
  close(): void {
    this.f.close();
  }
}

/** The real file system, through Deno's synchronous APIs. */
export const denoEnv: Env = {
  openSync: (path, opts) => new DenoFile(Deno.openSync(path, opts), !!opts.write),
  readFileSync: (path) => Deno.readFileSync(path),
  renameSync: (from, to) => Deno.renameSync(from, to),
  removeSync: (path, opts) => Deno.removeSync(path, opts),
  readDirSync: (path) =>
    [...Deno.readDirSync(path)].map((e) => ({
      name: e.name,
      isFile: e.isFile,
      isDirectory: e.isDirectory,
    })),
  statSync: (path) => {
    const s = Deno.statSync(path);
    return { size: s.size, isFile: s.isFile, isDirectory: s.isDirectory };
  },
  mkdirSync: (path, opts) => Deno.mkdirSync(path, opts),
  syncDirSync: (path) => {
    const d = Deno.openSync(path, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  },
  tryLockSync: (path) => {
    const file = Deno.openSync(path, { read: true, write: true, create: true });
    let ok = false;
    try {
      ok = file.tryLockSync(true);
    } finally {
      if (!ok) file.close();
    }
    if (!ok) return undefined;
    return {
      release() {
        try {
          file.unlockSync();
        } finally {
          file.close();
        }
      },
    };
  },
};
