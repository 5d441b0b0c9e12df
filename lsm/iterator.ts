/**
 * Internal iterators over (user key, sequence, kind, value) entries and the
 * merging iterator that combines memtables and tables in internal-key order.
 * @module
 */
import { compareBytes } from "./bytes.ts";

/**
 * A synchronous cursor over internal entries in internal-key order. Views
 * returned by `userKey()`/`value()` are valid until the cursor moves.
 */
export interface InternalIterator {
  /** True when positioned on an entry. */
  valid(): boolean;
  /** Positions at the first entry. */
  seekToFirst(): void;
  /** Positions at the first entry >= (key, seq). */
  seek(key: Uint8Array, seq: number): void;
  /** Positions at some entry whose user key is the largest user key < `key`. */
  seekLT(key: Uint8Array): void;
  /** Positions at some entry of the largest user key. */
  seekToLast(): void;
  /** Advances to the next entry. */
  next(): void;
  /** User key of the current entry. */
  userKey(): Uint8Array;
  /** Sequence number of the current entry. */
  seq(): number;
  /** Kind of the current entry. */
  kind(): number;
  /** Value of the current entry. */
  value(): Uint8Array;
}

/** Compares the current entries of two valid iterators in internal-key order. */
export function compareIters(a: InternalIterator, b: InternalIterator): number {
  const c = compareBytes(a.userKey(), b.userKey());
  if (c !== 0) return c;
  const sa = a.seq();
  const sb = b.seq();
  return sa > sb ? -1 : sa < sb ? 1 : 0;
}

/**
 * Forward merge of several iterators (earlier children win ties), using a
 * binary min-heap of children so each step costs O(log n) comparisons.
 * `seekLT`/`seekToLast` position at the largest user key (reverse helpers).
 */
export class MergingIterator implements InternalIterator {
  private cur = -1;
  private heap: number[] = [];
  constructor(private readonly children: InternalIterator[]) {}

  private less(a: number, b: number): boolean {
    const c = compareIters(this.children[a], this.children[b]);
    return c < 0 || (c === 0 && a < b);
  }

  private siftDown(i: number): void {
    const h = this.heap;
    const n = h.length;
    const x = h[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && this.less(h[r], h[l]) ? r : l;
      if (!this.less(h[m], x)) break;
      h[i] = h[m];
      i = m;
    }
    h[i] = x;
  }

  private rebuild(): void {
    const h: number[] = [];
    for (let i = 0; i < this.children.length; i++) if (this.children[i].valid()) h.push(i);
    this.heap = h;
    for (let i = (h.length >>> 1) - 1; i >= 0; i--) this.siftDown(i);
    this.cur = h.length > 0 ? h[0] : -1;
  }

  valid(): boolean {
    return this.cur >= 0;
  }
  seekToFirst(): void {
    for (const c of this.children) c.seekToFirst();
    this.rebuild();
  }
  seek(key: Uint8Array, seq: number): void {
    for (const c of this.children) c.seek(key, seq);
    this.rebuild();
  }
  /** Positions at the largest user key < key among children (reverse helper). */
  seekLT(key: Uint8Array): void {
    this.pickLast((c) => c.seekLT(key));
  }
  seekToLast(): void {
    this.pickLast((c) => c.seekToLast());
  }
  private pickLast(f: (c: InternalIterator) => void): void {
    let best = -1;
    for (let i = 0; i < this.children.length; i++) {
      const c = this.children[i];
      f(c);
      if (!c.valid()) continue;
      if (best < 0 || compareBytes(c.userKey(), this.children[best].userKey()) > 0) best = i;
    }
    this.cur = best;
    this.heap = []; // forward order is rebuilt by the next seek
  }
  next(): void {
    const h = this.heap;
    if (h.length === 0 || h[0] !== this.cur) {
      // Not in forward mode (after a reverse helper): step the child and re-merge.
      this.children[this.cur].next();
      this.rebuild();
      return;
    }
    this.children[h[0]].next();
    if (!this.children[h[0]].valid()) {
      const last = h.pop()!;
      if (h.length === 0) {
        this.cur = -1;
        return;
      }
      h[0] = last;
    }
    this.siftDown(0);
    this.cur = h[0];
  }
  userKey(): Uint8Array {
    return this.children[this.cur].userKey();
  }
  seq(): number {
    return this.children[this.cur].seq();
  }
  kind(): number {
    return this.children[this.cur].kind();
  }
  value(): Uint8Array {
    return this.children[this.cur].value();
  }
}
