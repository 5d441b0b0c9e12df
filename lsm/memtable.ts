/**
 * Memtable: an arena-backed skiplist of internal entries (user key, sequence,
 * kind, value) ordered by user key ascending then sequence descending.
 *
 * Key and value bytes live in one growable arena; node fields live in typed
 * arrays, so inserts allocate no per-entry objects. Readers may iterate while
 * writers insert (single thread): a node is fully linked before it is visible.
 * @module
 */
import { KIND_PUT, MAX_SEQ } from "./internal_key.ts";
import type { InternalIterator } from "./iterator.ts";
import { copyOut } from "./slab.ts";

const MAX_HEIGHT = 12;
const HEAD = 0;
const NIL = -1;

/** Transferable snapshot of a memtable's arrays. */
export interface MemtableState {
  arena: Uint8Array;
  kOff: Int32Array;
  kLen: Int32Array;
  vOff: Int32Array;
  vLen: Int32Array;
  seqs: Float64Array;
  kinds: Uint8Array;
  linkBase: Int32Array;
  links: Int32Array;
  height: number;
  entries: number;
}

/** In-memory sorted write buffer. */
export class Memtable {
  private arena: Uint8Array;
  private arenaLen = 0;
  private kOff: Int32Array;
  private kLen: Int32Array;
  private vOff: Int32Array;
  private vLen: Int32Array;
  private seqs: Float64Array;
  private kinds: Uint8Array;
  private linkBase: Int32Array;
  private links: Int32Array;
  private linksLen = 0;
  private count = 1;
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

  constructor(initialArena = 64 * 1024) {
    this.arena = new Uint8Array(initialArena);
    const cap = 1024;
    this.kOff = new Int32Array(cap);
    this.kLen = new Int32Array(cap);
    this.vOff = new Int32Array(cap);
    this.vLen = new Int32Array(cap);
    this.seqs = new Float64Array(cap);
    this.kinds = new Uint8Array(cap);
    this.linkBase = new Int32Array(cap);
    this.links = new Int32Array(cap * 2);
    this.links.fill(NIL, 0, MAX_HEIGHT);
    this.linksLen = MAX_HEIGHT;
    this.seqs[HEAD] = MAX_SEQ;
  }

  /** Approximate memory used, in bytes. */
  get approximateBytes(): number {
    return this.arenaLen + this.count * 33 + this.linksLen * 4;
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

  private growNodes(): void {
    const cap = this.kOff.length * 2;
    const g32 = (a: Int32Array) => {
      const n = new Int32Array(cap);
      n.set(a);
      return n;
    };
    this.kOff = g32(this.kOff);
    this.kLen = g32(this.kLen);
    this.vOff = g32(this.vOff);
    this.vLen = g32(this.vLen);
    this.linkBase = g32(this.linkBase);
    const s = new Float64Array(cap);
    s.set(this.seqs);
    this.seqs = s;
    const k = new Uint8Array(cap);
    k.set(this.kinds);
    this.kinds = k;
  }

  private arenaAlloc(n: number): number {
    if (this.arenaLen + n > this.arena.length) {
      let cap = this.arena.length * 2;
      while (cap < this.arenaLen + n) cap *= 2;
      const a = new Uint8Array(cap);
      a.set(this.arena.subarray(0, this.arenaLen));
      this.arena = a;
    }
    const off = this.arenaLen;
    this.arenaLen += n;
    return off;
  }

  /** Compares node `x` with (key, seq): negative when node sorts first. */
  private cmp(x: number, key: Uint8Array, seq: number): number {
    const a = this.arena;
    const ko = this.kOff[x];
    const kl = this.kLen[x];
    const n = kl < key.length ? kl : key.length;
    for (let i = 0; i < n; i++) {
      const d = a[ko + i] - key[i];
      if (d !== 0) return d;
    }
    if (kl !== key.length) return kl - key.length;
    const s = this.seqs[x];
    return s > seq ? -1 : s < seq ? 1 : 0;
  }

  /** Node of the first entry >= (key, seq); fills `prev` when asked. */
  private findGE(key: Uint8Array, seq: number, fillPrev: boolean): number {
    let x = HEAD;
    const links = this.links;
    const base = this.linkBase;
    for (let lvl = this.height - 1; lvl >= 0; lvl--) {
      for (;;) {
        const nx = links[base[x] + lvl];
        if (nx !== NIL && this.cmp(nx, key, seq) < 0) x = nx;
        else break;
      }
      if (fillPrev) this.prev[lvl] = x;
    }
    return links[base[x]];
  }

  /** Last node < (key, seq) or HEAD. */
  findLT(key: Uint8Array, seq: number): number {
    let x = HEAD;
    for (let lvl = this.height - 1; lvl >= 0; lvl--) {
      for (;;) {
        const nx = this.links[this.linkBase[x] + lvl];
        if (nx !== NIL && this.cmp(nx, key, seq) < 0) x = nx;
        else break;
      }
    }
    return x;
  }

  /** Last node or HEAD when empty. */
  findLast(): number {
    let x = HEAD;
    for (let lvl = this.height - 1; lvl >= 0; lvl--) {
      for (;;) {
        const nx = this.links[this.linkBase[x] + lvl];
        if (nx !== NIL) x = nx;
        else break;
      }
    }
    return x;
  }

  /** Inserts an entry; key and value are copied. Sequence numbers must be unique. */
  add(seq: number, kind: number, key: Uint8Array, value: Uint8Array | undefined): void {
    this.findGE(key, seq, true);
    const h = this.randomHeight();
    if (h > this.height) {
      for (let l = this.height; l < h; l++) this.prev[l] = HEAD;
      this.height = h;
    }
    if (this.count === this.kOff.length) this.growNodes();
    const x = this.count++;
    const vl = kind === KIND_PUT ? value!.length : 0;
    const off = this.arenaAlloc(key.length + vl);
    this.arena.set(key, off);
    if (vl > 0) this.arena.set(value!, off + key.length);
    this.kOff[x] = off;
    this.kLen[x] = key.length;
    this.vOff[x] = off + key.length;
    this.vLen[x] = vl;
    this.seqs[x] = seq;
    this.kinds[x] = kind;
    if (this.linksLen + h > this.links.length) {
      const nl = new Int32Array(this.links.length * 2);
      nl.set(this.links);
      this.links = nl;
    }
    const lb = this.linksLen;
    this.linkBase[x] = lb;
    this.linksLen += h;
    const links = this.links;
    const base = this.linkBase;
    for (let l = 0; l < h; l++) {
      const p = this.prev[l];
      links[lb + l] = links[base[p] + l];
      links[base[p] + l] = x;
    }
    this.entries++;
    if (this.minSeq === 0 || seq < this.minSeq) this.minSeq = seq;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  /**
   * Looks up the newest entry of `key` with sequence <= `seq`. Returns the node
   * id, or -1 when the memtable holds no such entry.
   */
  find(key: Uint8Array, seq: number): number {
    const x = this.findGE(key, seq, false);
    if (x === NIL) return -1;
    const kl = this.kLen[x];
    if (kl !== key.length) return -1;
    const a = this.arena;
    const ko = this.kOff[x];
    for (let i = 0; i < kl; i++) if (a[ko + i] !== key[i]) return -1;
    return x;
  }

  /** Next node at level 0 (NIL = -1 at the end). */
  nextOf(x: number): number {
    return this.links[this.linkBase[x]];
  }
  /** Kind of node `x`. */
  kindOf(x: number): number {
    return this.kinds[x];
  }
  /** Sequence of node `x`. */
  seqOf(x: number): number {
    return this.seqs[x];
  }
  /** User key of node `x` (a view; do not keep across inserts). */
  keyOf(x: number): Uint8Array {
    const o = this.kOff[x];
    return this.arena.subarray(o, o + this.kLen[x]);
  }
  /** Value of node `x` (a view; do not keep across inserts). */
  valueOf(x: number): Uint8Array {
    const o = this.vOff[x];
    return this.arena.subarray(o, o + this.vLen[x]);
  }
  /** A copy of the value of node `x`. */
  valueCopy(x: number): Uint8Array {
    return copyOut(this.arena, this.vOff[x], this.vLen[x]);
  }

  /** Copies of the arrays holding this memtable (for a flush in a Worker). */
  exportState(): MemtableState {
    return {
      arena: this.arena.slice(0, this.arenaLen),
      kOff: this.kOff.slice(0, this.count),
      kLen: this.kLen.slice(0, this.count),
      vOff: this.vOff.slice(0, this.count),
      vLen: this.vLen.slice(0, this.count),
      seqs: this.seqs.slice(0, this.count),
      kinds: this.kinds.slice(0, this.count),
      linkBase: this.linkBase.slice(0, this.count),
      links: this.links.slice(0, this.linksLen),
      height: this.height,
      entries: this.entries,
    };
  }

  /** Rebuilds a read-only memtable from {@linkcode Memtable.exportState} output. */
  static fromState(st: MemtableState): Memtable {
    const m = new Memtable(16);
    m.arena = st.arena;
    m.arenaLen = st.arena.length;
    m.kOff = st.kOff;
    m.kLen = st.kLen;
    m.vOff = st.vOff;
    m.vLen = st.vLen;
    m.seqs = st.seqs;
    m.kinds = st.kinds;
    m.linkBase = st.linkBase;
    m.links = st.links;
    m.linksLen = st.links.length;
    m.count = st.kOff.length;
    m.height = st.height;
    m.entries = st.entries;
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
    const p = this.m.findLT(key, seq);
    this.x = this.m.nextOf(p);
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
