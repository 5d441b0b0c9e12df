/**
 * Memtable: an arena-backed skiplist of internal entries (user key, sequence,
 * kind, value) ordered by user key ascending then sequence descending.
 *
 * Key and value bytes live in one growable byte arena; each node is a record
 * in one growable Int32Array (fields + the first 4 key bytes + next links), so
 * a node visit touches one cache line and most comparisons never read the
 * arena. Inserts allocate no per-entry objects. Readers may iterate while a
 * writer inserts (single thread): a node is fully linked before it is visible.
 *
 * The arrays can live on SharedArrayBuffers (`shared`), so a flush Worker reads
 * a frozen memtable in place (no copy), and a flushed memtable's arrays can be
 * handed to the next one ({@linkcode Memtable.releaseBuffers}): in steady
 * state writes allocate no memtable memory at all.
 * @module
 */
import { KIND_PUT, MAX_SEQ } from "./internal_key.ts";
import type { InternalIterator } from "./iterator.ts";
import { copyOut } from "./slab.ts";
import { bloomHash } from "./bloom.ts";

const MAX_HEIGHT = 12;
const NIL = -1;
// Node record layout (Int32 slots).
const K_OFF = 0;
const K_LEN = 1;
const V_OFF = 2;
const V_LEN = 3;
const SEQ_HI = 4;
const SEQ_LO = 5;
const KIND_H = 6; // kind | height << 8
// PREFIX..PREFIX+3: first 16 key bytes (zero padded) as 4 big-endian words,
// xor 0x80000000 so signed comparison orders them like unsigned bytes.
const PREFIX = 7;
const LINKS = 11;
const INLINE = 16;
const HEAD = 0;

/**
 * The arrays of a memtable, sent to a flush Worker (structured clone: shared
 * arrays are shared, others copied) and rebuilt there by {@linkcode Memtable.fromState}.
 */
export interface MemtableState {
  arena: Uint8Array;
  /** Bytes of `arena` in use. */
  arenaLen: number;
  nodes: Int32Array;
  /** Slots of `nodes` in use. */
  nodesLen: number;
  height: number;
  entries: number;
  maxSeq: number;
  minSeq: number;
}

function prefixOf(key: Uint8Array, off: number, len: number): number {
  const b0 = len > 0 ? key[off] : 0;
  const b1 = len > 1 ? key[off + 1] : 0;
  const b2 = len > 2 ? key[off + 2] : 0;
  const b3 = len > 3 ? key[off + 3] : 0;
  return ((b0 << 24) | (b1 << 16) | (b2 << 8) | b3) ^ 0x80000000;
}

/** Arrays of a retired memtable, reusable by the next one. */
export interface MemtableBuffers {
  arena: Uint8Array;
  nodes: Int32Array;
  filter: Int32Array | undefined;
  shared: boolean;
}

/**
 * Frees a retired memtable's arrays now when they are not shared (a transfer detaches them and
 * drops their memory); shared ones are freed by the garbage collector once unreferenced.
 */
export function freeMemtableBuffers(b: MemtableBuffers): void {
  if (b.shared) return;
  for (const a of [b.arena, b.nodes, b.filter]) {
    const ab = a?.buffer as ArrayBuffer | undefined;
    if (ab !== undefined && !ab.detached) ab.transfer(0);
  }
}

function newBytes(n: number, shared: boolean): Uint8Array {
  return new Uint8Array(shared ? new SharedArrayBuffer(n) : new ArrayBuffer(n));
}

function newInts(n: number, shared: boolean): Int32Array {
  return new Int32Array(shared ? new SharedArrayBuffer(n * 4) : new ArrayBuffer(n * 4));
}

/** In-memory sorted write buffer. */
export class Memtable {
  private arena: Uint8Array;
  private arenaLen = 0;
  private nodes: Int32Array;
  private nodesLen: number;
  private height = 1;
  private rnd = 0x2545f491;
  private readonly prev = new Int32Array(MAX_HEIGHT);
  /** Number of entries. */
  entries = 0;
  /** Smallest and largest sequence numbers inserted (0 when empty). */
  minSeq = 0;
  maxSeq = 0;
  /** Number of the WAL file holding this memtable's writes. */
  walNumber = 0;
  /** Two-probe bit filter over inserted user keys: lets most point misses skip the skiplist. */
  private filter: Int32Array | undefined;
  private filterMask = 0;

  /** Arrays on SharedArrayBuffers (readable by a Worker in place). */
  get shared(): boolean {
    return this.isShared;
  }
  private isShared: boolean;
  /** Open iterators of callers that may outlive a flush (scans); see {@linkcode Memtable.releaseBuffers}. */
  readers = 0;

  /**
   * @param initialArena initial arena capacity in bytes (the node array gets as many bytes); a
   *   new array's pages take memory only once written, so a capacity the memtable may reach
   *   costs nothing up front and saves the copies (and dead arrays) of growing
   * @param capacityBytes expected size when full; sizes the key filter (about
   *   1/16 of it, at least 256 bytes); 0 disables the filter
   * @param shared allocate the arrays on SharedArrayBuffers
   * @param reuse arrays of a retired memtable (from {@linkcode Memtable.releaseBuffers})
   *   used instead of new ones when they match
   */
  constructor(
    initialArena = 64 * 1024,
    capacityBytes = 8 << 20,
    shared = false,
    reuse?: MemtableBuffers,
  ) {
    this.isShared = shared;
    if (reuse !== undefined && reuse.shared !== shared) reuse = undefined;
    if (capacityBytes > 0) {
      let bits = 2048;
      while (bits * 2 <= capacityBytes / 2) bits *= 2;
      if (reuse?.filter !== undefined && reuse.filter.length === bits >>> 5) {
        this.filter = reuse.filter;
        this.filter.fill(0);
      } else this.filter = newInts(bits >>> 5, shared);
      this.filterMask = bits - 1;
    }
    this.arena = reuse?.arena ?? newBytes(initialArena, shared);
    this.nodes = reuse?.nodes ?? newInts(Math.max(1024, initialArena >>> 2), shared);
    const hs = this.nodes;
    hs.fill(0, 0, LINKS);
    hs[KIND_H] = MAX_HEIGHT << 8;
    hs[SEQ_HI] = 0x7fffffff;
    hs.fill(NIL, LINKS, LINKS + MAX_HEIGHT);
    this.nodesLen = LINKS + MAX_HEIGHT;
  }

  /** Approximate memory used, in bytes. */
  get approximateBytes(): number {
    return this.arenaLen + this.nodesLen * 4 + (this.filter ? this.filter.length * 4 : 0);
  }

  private randomHeight(): number {
    let h = 1;
    let x = this.rnd;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rnd = x;
    while (h < MAX_HEIGHT && (x & 3) === 0) {
      h++;
      x >>>= 2;
    }
    return h;
  }

  private arenaAlloc(n: number): number {
    if (this.arenaLen + n > this.arena.length) {
      let cap = this.arena.length * 2;
      while (cap < this.arenaLen + n) cap *= 2;
      const a = newBytes(cap, this.shared);
      a.set(this.arena.subarray(0, this.arenaLen));
      this.arena = a;
    }
    const off = this.arenaLen;
    this.arenaLen += n;
    return off;
  }

  private kw0 = 0;
  private kw1 = 0;
  private kw2 = 0;
  private kw3 = 0;

  /** Compares node `x` with (key, seq) whose inline words are kw0..kw3: negative when node sorts first. */
  private cmp(x: number, key: Uint8Array, seq: number): number {
    const nd = this.nodes;
    const p = x + PREFIX;
    let a = nd[p];
    if (a !== this.kw0) return a < this.kw0 ? -1 : 1;
    a = nd[p + 1];
    if (a !== this.kw1) return a < this.kw1 ? -1 : 1;
    a = nd[p + 2];
    if (a !== this.kw2) return a < this.kw2 ? -1 : 1;
    a = nd[p + 3];
    if (a !== this.kw3) return a < this.kw3 ? -1 : 1;
    const kl = nd[x + K_LEN];
    const n = kl < key.length ? kl : key.length;
    if (n > INLINE) {
      const ar = this.arena;
      const ko = nd[x + K_OFF];
      for (let i = INLINE; i < n; i++) {
        const d = ar[ko + i] - key[i];
        if (d !== 0) return d;
      }
    }
    if (kl !== key.length) return kl - key.length;
    const hi = seq < 4294967296 ? 0 : Math.floor(seq / 4294967296);
    const sh = nd[x + SEQ_HI];
    if (sh !== hi) return sh > hi ? -1 : 1;
    const sl = nd[x + SEQ_LO] >>> 0;
    const lo = seq < 4294967296 ? seq : seq - hi * 4294967296;
    return sl > lo ? -1 : sl < lo ? 1 : 0;
  }

  /** Last node < (key, seq) (HEAD when none); fills `prev` when asked. */
  private findLess(key: Uint8Array, seq: number, fillPrev: boolean): number {
    const kl = key.length;
    this.kw0 = prefixOf(key, 0, kl);
    this.kw1 = prefixOf(key, 4, kl - 4);
    this.kw2 = prefixOf(key, 8, kl - 8);
    this.kw3 = prefixOf(key, 12, kl - 12);
    let x = HEAD;
    const nd = this.nodes;
    for (let lvl = this.height - 1; lvl >= 0; lvl--) {
      for (;;) {
        const nx = nd[x + LINKS + lvl];
        if (nx !== NIL && this.cmp(nx, key, seq) < 0) x = nx;
        else break;
      }
      if (fillPrev) this.prev[lvl] = x;
    }
    return x;
  }

  /** Last node < (key, seq), or HEAD. */
  findLT(key: Uint8Array, seq: number): number {
    return this.findLess(key, seq, false);
  }

  /** Last node or HEAD when empty. */
  findLast(): number {
    let x = HEAD;
    const nd = this.nodes;
    for (let lvl = this.height - 1; lvl >= 0; lvl--) {
      for (;;) {
        const nx = nd[x + LINKS + lvl];
        if (nx !== NIL) x = nx;
        else break;
      }
    }
    return x;
  }

  /** Inserts an entry; key and value are copied. Sequence numbers must be unique. */
  add(seq: number, kind: number, key: Uint8Array, value: Uint8Array | undefined): void {
    if (this.filter !== undefined) {
      const h = bloomHash(key);
      const f = this.filter;
      const a = h & this.filterMask;
      const b2 = ((h >>> 11) ^ (h << 21)) & this.filterMask;
      f[a >>> 5] |= 1 << (a & 31);
      f[b2 >>> 5] |= 1 << (b2 & 31);
    }
    this.findLess(key, seq, true);
    const h = this.randomHeight();
    if (h > this.height) {
      for (let l = this.height; l < h; l++) this.prev[l] = HEAD;
      this.height = h;
    }
    const need = this.nodesLen + LINKS + h;
    if (need > this.nodes.length) {
      const nn = newInts(Math.max(need, this.nodes.length * 2), this.shared);
      nn.set(this.nodes.subarray(0, this.nodesLen));
      this.nodes = nn;
    }
    const x = this.nodesLen;
    this.nodesLen = need;
    const vl = kind === KIND_PUT ? value!.length : 0;
    const kl = key.length;
    const off = this.arenaAlloc(kl + vl);
    const a = this.arena;
    if (kl <= 32) { for (let i = 0; i < kl; i++) a[off + i] = key[i]; }
    else a.set(key, off);
    if (vl > 0) {
      if (vl <= 32) { for (let i = 0; i < vl; i++) a[off + kl + i] = value![i]; }
      else a.set(value!, off + kl);
    }
    const nd = this.nodes;
    nd[x + K_OFF] = off;
    nd[x + K_LEN] = kl;
    nd[x + V_OFF] = off + kl;
    nd[x + V_LEN] = vl;
    const hi = Math.floor(seq / 4294967296);
    nd[x + SEQ_HI] = hi;
    nd[x + SEQ_LO] = (seq - hi * 4294967296) | 0;
    nd[x + KIND_H] = kind | (h << 8);
    nd[x + PREFIX] = this.kw0;
    nd[x + PREFIX + 1] = this.kw1;
    nd[x + PREFIX + 2] = this.kw2;
    nd[x + PREFIX + 3] = this.kw3;
    for (let l = 0; l < h; l++) {
      const p = this.prev[l];
      nd[x + LINKS + l] = nd[p + LINKS + l];
      nd[p + LINKS + l] = x;
    }
    this.entries++;
    if (this.minSeq === 0 || seq < this.minSeq) this.minSeq = seq;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  /**
   * Looks up the newest entry of `key` with sequence <= `seq`. Returns the node
   * id, or -1 when the memtable holds no such entry.
   */
  find(key: Uint8Array, seq: number, hash?: number): number {
    if (hash !== undefined && this.filter !== undefined) {
      const f = this.filter;
      const a = hash & this.filterMask;
      const b2 = ((hash >>> 11) ^ (hash << 21)) & this.filterMask;
      if ((f[a >>> 5] & (1 << (a & 31))) === 0 || (f[b2 >>> 5] & (1 << (b2 & 31))) === 0) return -1;
    }
    const p = this.findLess(key, seq, false);
    const nd = this.nodes;
    const x = nd[p + LINKS];
    if (x === NIL) return -1;
    const kl = nd[x + K_LEN];
    if (kl !== key.length) return -1;
    const a = this.arena;
    const ko = nd[x + K_OFF];
    for (let i = 0; i < kl; i++) if (a[ko + i] !== key[i]) return -1;
    return x;
  }

  /** Next node at level 0 (-1 at the end). */
  nextOf(x: number): number {
    return this.nodes[x + LINKS];
  }
  /** Kind of node `x`. */
  kindOf(x: number): number {
    return this.nodes[x + KIND_H] & 0xff;
  }
  /** Sequence of node `x`. */
  seqOf(x: number): number {
    return this.nodes[x + SEQ_HI] * 4294967296 + (this.nodes[x + SEQ_LO] >>> 0);
  }
  /** User key of node `x` (a view; do not keep across inserts). */
  keyOf(x: number): Uint8Array {
    const o = this.nodes[x + K_OFF];
    return this.arena.subarray(o, o + this.nodes[x + K_LEN]);
  }
  /** Value of node `x` (a view; do not keep across inserts). */
  valueOf(x: number): Uint8Array {
    const o = this.nodes[x + V_OFF];
    return this.arena.subarray(o, o + this.nodes[x + V_LEN]);
  }
  /** A copy of the value of node `x`. */
  valueCopy(x: number): Uint8Array {
    return copyOut(this.arena, this.nodes[x + V_OFF], this.nodes[x + V_LEN]);
  }

  /**
   * The arrays holding this memtable, for a flush in a Worker: shared arrays
   * are read there in place, others are copied by the message. The memtable
   * must not change until the flush is done.
   */
  exportState(): MemtableState {
    return {
      arena: this.arena,
      arenaLen: this.arenaLen,
      nodes: this.nodes,
      nodesLen: this.nodesLen,
      height: this.height,
      entries: this.entries,
      maxSeq: this.maxSeq,
      minSeq: this.minSeq,
    };
  }

  /**
   * Moves a frozen memtable onto shared arrays, so that a Worker can read it in place: its
   * contents are copied into `target` (a flushed memtable's shared arrays, when large enough)
   * or into new shared arrays. Returns its previous arrays for the next active memtable, or
   * undefined when a reader (a scan's iterator, which may hold views of them) is open.
   *
   * The active memtable lives on ordinary arrays, so that close() can free it at once (shared
   * memory is only freed by a full garbage collection); the copy (~1 ms per 8 MiB) is made once
   * per memtable switch.
   */
  moveToShared(target: MemtableBuffers | undefined): MemtableBuffers | undefined {
    if (this.isShared) return undefined;
    const t = target?.shared ? target : undefined;
    const arena = t !== undefined && t.arena.length >= this.arenaLen
      ? t.arena
      : newBytes(Math.max(this.arena.length, this.arenaLen), true);
    const nodes = t !== undefined && t.nodes.length >= this.nodesLen
      ? t.nodes
      : newInts(this.nodes.length, true);
    let filter: Int32Array | undefined;
    if (this.filter !== undefined) {
      filter = t?.filter !== undefined && t.filter.length === this.filter.length
        ? t.filter
        : newInts(this.filter.length, true);
      filter.set(this.filter);
    }
    arena.set(this.arena.subarray(0, this.arenaLen));
    nodes.set(this.nodes.subarray(0, this.nodesLen));
    const old: MemtableBuffers = {
      arena: this.arena,
      nodes: this.nodes,
      filter: this.filter,
      shared: false,
    };
    this.arena = arena;
    this.nodes = nodes;
    this.filter = filter;
    this.isShared = true;
    return this.readers === 0 ? old : undefined;
  }

  /**
   * Hands this memtable's arrays over to a new memtable; this one must never
   * be read again (no reader, iterator or Worker may still use it).
   */
  releaseBuffers(): MemtableBuffers {
    const b = { arena: this.arena, nodes: this.nodes, filter: this.filter, shared: this.shared };
    this.arena = new Uint8Array(0);
    this.nodes = new Int32Array(LINKS + MAX_HEIGHT);
    this.nodes.fill(NIL, LINKS, LINKS + MAX_HEIGHT);
    this.nodesLen = LINKS + MAX_HEIGHT;
    this.arenaLen = 0;
    this.entries = 0;
    this.filter = undefined;
    return b;
  }

  /**
   * Empties this memtable for good (the database closed: it is never read again) and frees its
   * arrays at once when they are not shared (shared ones are freed by the garbage collector once
   * nothing refers to them).
   */
  dispose(): void {
    freeMemtableBuffers(this.releaseBuffers());
  }

  /** Rebuilds a read-only memtable from {@linkcode Memtable.exportState} output. */
  static fromState(st: MemtableState): Memtable {
    const m = new Memtable(16, 0);
    m.arena = st.arena;
    m.arenaLen = st.arenaLen;
    m.nodes = st.nodes;
    m.nodesLen = st.nodesLen;
    m.height = st.height;
    m.entries = st.entries;
    m.maxSeq = st.maxSeq;
    m.minSeq = st.minSeq;
    return m;
  }

  /** A new iterator over this memtable. */
  iterator(): MemtableIterator {
    return new MemtableIterator(this);
  }
}

/** Iterator over a memtable's internal entries. */
export class MemtableIterator implements InternalIterator {
  private x = -1;
  private uk: Uint8Array | undefined;
  private ukx = -2;
  constructor(private readonly m: Memtable) {}
  valid(): boolean {
    return this.x > 0;
  }
  seekToFirst(): void {
    this.x = this.m.nextOf(HEAD);
  }
  seek(key: Uint8Array, seq: number): void {
    this.x = this.m.nextOf(this.m.findLT(key, seq));
  }
  seekLT(key: Uint8Array): void {
    const p = this.m.findLT(key, MAX_SEQ);
    this.x = p === HEAD ? -1 : p;
  }
  seekToLast(): void {
    const p = this.m.findLast();
    this.x = p === HEAD ? -1 : p;
  }
  next(): void {
    this.x = this.m.nextOf(this.x);
  }
  userKey(): Uint8Array {
    if (this.ukx !== this.x) {
      this.uk = this.m.keyOf(this.x);
      this.ukx = this.x;
    }
    return this.uk!;
  }
  seq(): number {
    return this.m.seqOf(this.x);
  }
  kind(): number {
    return this.m.kindOf(this.x);
  }
  value(): Uint8Array {
    return this.m.valueOf(this.x);
  }
}
