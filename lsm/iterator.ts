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

/** Forward merge of several iterators (earlier children win ties). */
export class MergingIterator implements InternalIterator {
  private cur = -1;
  constructor(private readonly children: InternalIterator[]) {}
  private pick(): void {
    let best = -1;
    const ch = this.children;
    for (let i = 0; i < ch.length; i++) {
      if (!ch[i].valid()) continue;
      if (best < 0 || compareIters(ch[i], ch[best]) < 0) best = i;
    }
    this.cur = best;
  }
  valid(): boolean {
    return this.cur >= 0;
  }
  seekToFirst(): void {
    for (const c of this.children) c.seekToFirst();
    this.pick();
  }
  seek(key: Uint8Array, seq: number): void {
    for (const c of this.children) c.seek(key, seq);
    this.pick();
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
  }
  next(): void {
    this.children[this.cur].next();
    this.pick();
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
