/**
 * A fault-injecting in-memory {@linkcode Env} for power-loss and I/O-error tests
 * of lsm/ and storage/ (LevelDB's FaultInjectionTestEnv is the model).
 *
 * It keeps two states of everything: what the "page cache" shows (every
 * write) and what is durable. File content becomes durable at fdatasync,
 * directory entries (creations, renames, removals, new directories) when their
 * directory is fsynced. {@linkcode FaultEnv.crash} is a power cut: every
 * directory goes back to its durable entries, every file to its durable
 * content — optionally keeping a random prefix of its unsynced appended bytes
 * (a torn last write, sometimes with a zeroed tail) — and every handle and lock
 * of the "dead process" becomes unusable (its calls throw
 * {@linkcode SimulatedCrashError}, so it cannot touch the recovered state).
 *
 * Mutating operations (open for writing, write, truncate, fdatasync, directory
 * fsync, rename, remove, mkdir) are numbered from 1; a test crashes at op N
 * ({@linkcode FaultEnv.crashAtOp}) or decides per op ({@linkcode FaultEnv.onOp})
 * to crash, fail with EIO ({@linkcode InjectedIoError}) or make a write short.
 * Randomness (torn lengths, bit flips) comes from a seeded PRNG, so a seed and
 * a crash point replay the same run of a deterministic workload.
 *
 * Not modelled: reordering of unsynced writes other than a torn tail,
 * metadata-only syncs, hard links, permissions. Paths are POSIX; relative
 * paths are taken from "/".
 * @module
 */
import type { DirEntry, Env, EnvFile, EnvLock, FileInfo, OpenOptions } from "./env.ts";
import { mulberry32 } from "./prng.ts";

/** Thrown by the operation at which a simulated crash happens and by every later call of the crashed process. */
export class SimulatedCrashError extends Error {
  /** Creates the error. */
  constructor(message = "simulated power loss") {
    super(message);
    this.name = "SimulatedCrashError";
  }
}

/** An injected I/O error (errno EIO). */
export class InjectedIoError extends Error {
  /** Always "EIO". */
  readonly code = "EIO";
  /** Creates the error for `op` on `path`. */
  constructor(op: FaultOp, path: string) {
    super(`Input/output error (os error 5): injected at ${op} ${path}`);
    this.name = "InjectedIoError";
  }
}

/** The mutating operations that get a number and can be faulted. */
export type FaultOp =
  | "open"
  | "write"
  | "truncate"
  | "sync"
  | "syncDir"
  | "rename"
  | "remove"
  | "mkdir";

/** What {@linkcode FaultEnv.onOp} sees. */
export interface FaultContext {
  /** The operation. */
  op: FaultOp;
  /** Its (first) path, normalized. */
  path: string;
  /** Its number (1-based, counted since the env was made, across crashes). */
  index: number;
}

/**
 * What to do with an operation: run it (undefined), simulate a power cut just
 * before it ("crash"), fail it with EIO ("eio"), or — for writes — write only a
 * random prefix and report the short count ("short").
 */
export type FaultAction = "crash" | "eio" | "short" | undefined;

/** Options of a {@linkcode FaultEnv}. */
export interface FaultEnvOptions {
  /** PRNG seed (default 1). */
  seed?: number;
  /** At a crash, keep a random prefix of each file's unsynced appended bytes (default false). */
  tornWrites?: boolean;
  /**
   * Asynchronous fdatasyncs complete after a random 1-4 macrotask hops instead
   * of one, so concurrent syncs finish in any order, as on a thread pool (default false).
   */
  reorderSyncs?: boolean;
}

interface FileNode {
  kind: "file";
  data: Uint8Array;
  len: number;
  /** Bytes [0, syncedLen) are durable... */
  syncedLen: number;
  /** ...and equal to this copy once bytes below syncedLen were overwritten since the sync. */
  syncedCopy: Uint8Array | undefined;
}

interface DirNode {
  kind: "dir";
  entries: Map<string, Node>;
  durable: Map<string, Node>;
}

type Node = FileNode | DirNode;

function newFile(): FileNode {
  return { kind: "file", data: new Uint8Array(256), len: 0, syncedLen: 0, syncedCopy: undefined };
}

function newDir(): DirNode {
  return { kind: "dir", entries: new Map(), durable: new Map() };
}

/** Splits a path into normalized components. */
function parts(path: string): string[] {
  const out: string[] = [];
  for (const p of path.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return out;
}

/** The shared state of the simulated disk (every process view sees it). */
class Disk {
  root: DirNode = newDir();
  gen = 0;
  locks = new Map<FileNode, number>();
  crashAt: number | undefined;
  opCount = 0;
  crashes = 0;
  onOp: ((ctx: FaultContext) => FaultAction) | undefined;
  constructor(
    readonly rand: () => number,
    readonly torn: boolean,
    readonly reorderSyncs: boolean,
  ) {}
}

/**
 * The in-memory, fault-injecting file system, as seen by one simulated
 * process. After a crash this view is dead (every call throws
 * {@linkcode SimulatedCrashError}); {@linkcode FaultEnv.restart} gives the
 * view of the next process over the same disk.
 */
export class FaultEnv implements Env {
  private disk: Disk;
  private gen: number;

  /** Creates an empty file system (just "/") and its first process view. */
  constructor(opts: FaultEnvOptions = {}) {
    this.disk = new Disk(
      mulberry32(opts.seed ?? 1),
      opts.tornWrites ?? false,
      opts.reorderSyncs ?? false,
    );
    this.gen = 0;
  }

  /** A view for a new process on the same disk (after a crash, or to share one). */
  restart(): FaultEnv {
    const v = new FaultEnv();
    v.disk = this.disk;
    v.gen = this.disk.gen;
    return v;
  }

  /** True when this view's process has crashed. */
  get crashed(): boolean {
    return this.gen !== this.disk.gen;
  }

  /** Mutating operations so far, across crashes (the numbering of crash points). */
  get opCount(): number {
    return this.disk.opCount;
  }

  /** Simulated crashes so far. */
  get crashes(): number {
    return this.disk.crashes;
  }

  /** Decides a fault for each mutating operation (after {@linkcode FaultEnv.crashAtOp}'s check). */
  get onOp(): ((ctx: FaultContext) => FaultAction) | undefined {
    return this.disk.onOp;
  }
  set onOp(f: ((ctx: FaultContext) => FaultAction) | undefined) {
    this.disk.onOp = f;
  }

  /** Crash just before mutating operation number `n` runs (undefined: never). */
  crashAtOp(n: number | undefined): void {
    this.disk.crashAt = n;
  }

  /** @internal Macrotask hops an asynchronous fdatasync takes. */
  syncHops(): number {
    return this.disk.reorderSyncs ? 1 + this.randomInt(4) : 1;
  }

  /** A random integer in [0, n) from the disk's seeded PRNG. */
  randomInt(n: number): number {
    return Math.floor(this.disk.rand() * n);
  }

  /**
   * Simulated power loss now: everything not durable is dropped (see the
   * module doc), locks are released and every view and handle of the running
   * process dies. Returns the view of the next process.
   */
  crash(): FaultEnv {
    const d = this.disk;
    d.gen++;
    d.crashes++;
    d.locks.clear();
    const seen = new Set<Node>();
    const visit = (dir: DirNode) => {
      dir.entries = new Map(dir.durable);
      for (const n of dir.entries.values()) {
        if (seen.has(n)) continue;
        seen.add(n);
        if (n.kind === "dir") visit(n);
        else this.restore(n);
      }
    };
    visit(d.root);
    return this.restart();
  }

  private restore(f: FileNode): void {
    let keep: Uint8Array;
    if (f.syncedCopy !== undefined) {
      keep = f.syncedCopy;
    } else {
      let n = f.syncedLen;
      let zeroFrom = n;
      if (this.disk.torn && f.len > f.syncedLen) {
        n += this.randomInt(f.len - f.syncedLen + 1);
        zeroFrom = n;
        // Sometimes the size made it to disk but the last data did not.
        if (this.disk.rand() < 0.25) {
          zeroFrom = Math.max(f.syncedLen, n - 1 - this.randomInt(512));
        }
      }
      keep = f.data.slice(0, n);
      if (zeroFrom < n) keep.fill(0, zeroFrom);
    }
    f.data = new Uint8Array(Math.max(256, keep.length));
    f.data.set(keep);
    f.len = keep.length;
    f.syncedLen = keep.length;
    f.syncedCopy = undefined;
  }

  /**
   * Flips one bit of the file at `path` in both its visible and durable
   * content (damage that survives a crash). The byte is `offset` or random,
   * the bit (0-7) `bit` or random; returns the offset flipped.
   */
  flipBit(path: string, offset?: number, bit?: number): number {
    const f = this.lookupFile(path);
    if (f.len === 0) throw new RangeError(`${path} is empty`);
    const off = offset ?? this.randomInt(f.len);
    const mask = 1 << (bit ?? this.randomInt(8));
    f.data[off] ^= mask;
    if (f.syncedCopy !== undefined && off < f.syncedCopy.length) f.syncedCopy[off] ^= mask;
    return off;
  }

  /** The visible content of a file (a copy). */
  fileBytes(path: string): Uint8Array {
    const f = this.lookupFile(path);
    return f.data.slice(0, f.len);
  }

  /** Every file path (visible state), sorted. */
  listFiles(): string[] {
    const out: string[] = [];
    const walk = (d: DirNode, prefix: string) => {
      for (const [name, n] of d.entries) {
        const p = `${prefix}/${name}`;
        if (n.kind === "dir") walk(n, p);
        else out.push(p);
      }
    };
    walk(this.disk.root, "");
    return out.sort();
  }

  // ------------------------------------------------------------ internals

  /** @internal Numbers a mutating operation and applies crash points and injected faults. */
  step(op: FaultOp, path: string): FaultAction {
    this.live();
    const d = this.disk;
    const index = ++d.opCount;
    let action: FaultAction = d.crashAt === index ? "crash" : undefined;
    if (action === undefined && d.onOp) action = d.onOp({ op, path, index });
    if (action === "crash") {
      this.crash();
      throw new SimulatedCrashError(`simulated power loss at op ${index} (${op} ${path})`);
    }
    if (action === "eio") throw new InjectedIoError(op, path);
    return action;
  }

  private walk(ps: string[], path: string): Node | undefined {
    let n: Node = this.disk.root;
    for (const p of ps) {
      if (n.kind !== "dir") throw new Deno.errors.NotADirectory(`not a directory: ${path}`);
      const c: Node | undefined = n.entries.get(p);
      if (c === undefined) return undefined;
      n = c;
    }
    return n;
  }

  private parentOf(path: string): [DirNode, string] {
    const ps = parts(path);
    if (ps.length === 0) throw new Deno.errors.AlreadyExists(`cannot replace "/"`);
    const name = ps.pop()!;
    const d = this.walk(ps, path);
    if (d === undefined) throw new Deno.errors.NotFound(`No such file or directory: ${path}`);
    if (d.kind !== "dir") throw new Deno.errors.NotADirectory(`not a directory: ${path}`);
    return [d, name];
  }

  private lookup(path: string): Node {
    const n = this.walk(parts(path), path);
    if (n === undefined) throw new Deno.errors.NotFound(`No such file or directory: ${path}`);
    return n;
  }

  private lookupFile(path: string): FileNode {
    const n = this.lookup(path);
    if (n.kind !== "file") throw new Deno.errors.IsADirectory(`is a directory: ${path}`);
    return n;
  }

  /** @internal Throws when this view's process has crashed. */
  live(): void {
    if (this.gen !== this.disk.gen) throw new SimulatedCrashError("process crashed");
  }

  // ------------------------------------------------------------ Env

  /** Opens a file (see {@linkcode Env.openSync}). */
  openSync(path: string, opts: OpenOptions): EnvFile {
    this.live();
    const [d, name] = this.parentOf(path);
    let n = d.entries.get(name);
    if (opts.write || opts.create || opts.truncate) this.step("open", path);
    if (n === undefined) {
      if (!opts.create) throw new Deno.errors.NotFound(`No such file or directory: ${path}`);
      n = newFile();
      d.entries.set(name, n);
    }
    if (n.kind !== "file") throw new Deno.errors.IsADirectory(`is a directory: ${path}`);
    if (opts.truncate) truncateNode(n, 0);
    return new FaultFile(this, n, path, !!opts.read, !!opts.write, !!opts.append);
  }

  /** Reads a whole file. */
  readFileSync(path: string): Uint8Array {
    this.live();
    return this.fileBytes(path);
  }

  /** Renames (replacing `to`). */
  renameSync(from: string, to: string): void {
    this.live();
    const [fd, fname] = this.parentOf(from);
    const n = fd.entries.get(fname);
    if (n === undefined) throw new Deno.errors.NotFound(`No such file or directory: ${from}`);
    const [td, tname] = this.parentOf(to);
    this.step("rename", from);
    fd.entries.delete(fname);
    td.entries.set(tname, n);
  }

  /** Removes a file or directory. */
  removeSync(path: string, opts?: { recursive?: boolean }): void {
    this.live();
    const [d, name] = this.parentOf(path);
    const n = d.entries.get(name);
    if (n === undefined) throw new Deno.errors.NotFound(`No such file or directory: ${path}`);
    if (n.kind === "dir" && n.entries.size > 0 && !opts?.recursive) {
      throw new Error(`Directory not empty (os error 39): ${path}`);
    }
    this.step("remove", path);
    d.entries.delete(name);
  }

  /** Lists a directory. */
  readDirSync(path: string): DirEntry[] {
    this.live();
    const n = this.lookup(path);
    if (n.kind !== "dir") throw new Deno.errors.NotADirectory(`not a directory: ${path}`);
    return [...n.entries].map(([name, c]) => ({
      name,
      isFile: c.kind === "file",
      isDirectory: c.kind === "dir",
    }));
  }

  /** Size and kind of a path. */
  statSync(path: string): FileInfo {
    this.live();
    const n = this.lookup(path);
    return {
      size: n.kind === "file" ? n.len : 0,
      isFile: n.kind === "file",
      isDirectory: n.kind === "dir",
    };
  }

  /** Creates a directory (durable once its parent is fsynced). */
  mkdirSync(path: string, opts?: { recursive?: boolean }): void {
    this.live();
    if (opts?.recursive) {
      const ps = parts(path);
      let d: DirNode = this.disk.root;
      for (let i = 0; i < ps.length; i++) {
        const c = d.entries.get(ps[i]);
        if (c === undefined) {
          this.step("mkdir", "/" + ps.slice(0, i + 1).join("/"));
          const nd = newDir();
          d.entries.set(ps[i], nd);
          d = nd;
        } else if (c.kind === "dir") d = c;
        else throw new Deno.errors.AlreadyExists(`File exists: ${path}`);
      }
      return;
    }
    const [d, name] = this.parentOf(path);
    if (d.entries.has(name)) throw new Deno.errors.AlreadyExists(`File exists: ${path}`);
    this.step("mkdir", path);
    d.entries.set(name, newDir());
  }

  /** fsyncs a directory: its current entries become durable. */
  syncDirSync(path: string): void {
    this.live();
    const n = this.lookup(path);
    if (n.kind !== "dir") throw new Deno.errors.NotADirectory(`not a directory: ${path}`);
    this.step("syncDir", path);
    n.durable = new Map(n.entries);
  }

  /** Takes an exclusive lock on `path` (creating the file). */
  tryLockSync(path: string): EnvLock | undefined {
    const f = this.openSync(path, { read: true, write: true, create: true });
    f.close();
    const node = this.lookupFile(path);
    const locks = this.disk.locks;
    if (locks.has(node)) return undefined;
    locks.set(node, this.gen);
    return {
      release: () => {
        if (!this.crashed) locks.delete(node);
      },
    };
  }
}

function ensureCapacity(f: FileNode, n: number): void {
  if (n <= f.data.length) return;
  const d = new Uint8Array(Math.max(n, f.data.length * 2));
  d.set(f.data.subarray(0, f.len));
  f.data = d;
}

/** Keeps a copy of the durable bytes before anything below syncedLen changes. */
function protectSynced(f: FileNode, from: number): void {
  if (from < f.syncedLen && f.syncedCopy === undefined) {
    f.syncedCopy = f.data.slice(0, f.syncedLen);
  }
}

function truncateNode(f: FileNode, len: number): void {
  protectSynced(f, len);
  if (len > f.len) {
    ensureCapacity(f, len);
    f.data.fill(0, f.len, len);
  }
  f.len = len;
}

class FaultFile implements EnvFile {
  private pos = 0;
  private closed = false;
  constructor(
    private readonly env: FaultEnv,
    private readonly node: FileNode,
    private readonly path: string,
    private readonly readable: boolean,
    private readonly writable: boolean,
    private readonly append: boolean,
  ) {}

  private check(): void {
    if (this.closed) throw new Deno.errors.BadResource(`file closed: ${this.path}`);
    this.env.live();
  }

  readAtSync(buf: Uint8Array, pos: number): number {
    this.check();
    if (!this.readable) throw new Deno.errors.BadResource(`not open for reading: ${this.path}`);
    const f = this.node;
    if (pos >= f.len) return 0;
    const n = Math.min(buf.length, f.len - pos);
    buf.set(f.data.subarray(pos, pos + n));
    return n;
  }

  writeSync(data: Uint8Array): number {
    this.check();
    if (!this.writable) throw new Deno.errors.BadResource(`not open for writing: ${this.path}`);
    const action = this.env.step("write", this.path);
    let n = data.length;
    if (action === "short" && n > 0) n = this.env.randomInt(n);
    const f = this.node;
    const at = this.append ? f.len : this.pos;
    protectSynced(f, at);
    ensureCapacity(f, at + n);
    if (at > f.len) f.data.fill(0, f.len, at);
    f.data.set(data.subarray(0, n), at);
    if (at + n > f.len) f.len = at + n;
    this.pos = at + n;
    return n;
  }

  truncateSync(len: number): void {
    this.check();
    this.env.step("truncate", this.path);
    truncateNode(this.node, len);
    this.pos = len;
  }

  sizeSync(): number {
    this.check();
    return this.node.len;
  }

  syncDataSync(): void {
    this.check();
    this.env.step("sync", this.path);
    const f = this.node;
    f.syncedLen = f.len;
    f.syncedCopy = undefined;
  }

  async syncData(): Promise<void> {
    this.check();
    // A macrotask boundary: other work interleaves with an asynchronous fdatasync.
    for (let i = this.env.syncHops(); i > 0; i--) await new Promise((r) => setTimeout(r, 0));
    this.syncDataSync();
  }

  close(): void {
    if (this.closed) throw new Deno.errors.BadResource(`file closed: ${this.path}`);
    this.closed = true;
  }
}
