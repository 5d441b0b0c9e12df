/**
 * The two-level iterator shared by a table (an index of blocks) and a level (a list of
 * tables): it walks child iterators in order, opening each child only when reached.
 * @module
 */
import { MAX_SEQ } from "./internal_key.ts";
import type { InternalIterator } from "./iterator.ts";

/** Iterates the entries of an ordered sequence of children (blocks or tables). */
export abstract class TwoLevelIterator<I extends InternalIterator> implements InternalIterator {
  /** The position of the current child, -1 when none. */
  private ci = -1;
  /** The current child's iterator. */
  protected it: I | undefined;

  /** The number of children. */
  protected abstract childCount(): number;
  /** Opens child `i`. */
  protected abstract openChild(i: number): I;
  /** The first child that may hold an entry >= (key, seq) (childCount() if none). */
  protected abstract findChild(key: Uint8Array, seq: number): number;

  /** Makes child `i` current; false (and no current child) when out of range. */
  private load(i: number): boolean {
    if (i < 0 || i >= this.childCount()) {
      this.ci = -1;
      this.it = undefined;
      return false;
    }
    this.ci = i;
    this.it = this.openChild(i);
    return true;
  }

  /** Moves past exhausted children. */
  private skipForward(): void {
    while (this.it !== undefined && !this.it.valid()) {
      if (!this.load(this.ci + 1)) return;
      this.it!.seekToFirst();
    }
  }

  /** See {@link InternalIterator.valid}. */
  valid(): boolean {
    return this.it !== undefined && this.it.valid();
  }
  /** See {@link InternalIterator.seekToFirst}. */
  seekToFirst(): void {
    if (this.load(0)) this.it!.seekToFirst();
    this.skipForward();
  }
  /** See {@link InternalIterator.seek}. */
  seek(key: Uint8Array, seq: number): void {
    if (this.load(this.findChild(key, seq))) this.it!.seek(key, seq);
    this.skipForward();
  }
  /** See {@link InternalIterator.seekLT}. */
  seekLT(key: Uint8Array): void {
    let i = this.findChild(key, MAX_SEQ);
    if (i >= this.childCount()) {
      this.seekToLast();
      return;
    }
    this.load(i);
    this.it!.seekLT(key);
    while (!this.it!.valid()) {
      i--;
      if (!this.load(i)) return;
      this.it!.seekToLast();
    }
  }
  /** See {@link InternalIterator.seekToLast}. */
  seekToLast(): void {
    if (this.load(this.childCount() - 1)) this.it!.seekToLast();
  }
  /** See {@link InternalIterator.next}. */
  next(): void {
    this.it!.next();
    this.skipForward();
  }
  /** See {@link InternalIterator.userKey}. */
  userKey(): Uint8Array {
    return this.it!.userKey();
  }
  /** See {@link InternalIterator.seq}. */
  seq(): number {
    return this.it!.seq();
  }
  /** See {@link InternalIterator.kind}. */
  kind(): number {
    return this.it!.kind();
  }
  /** See {@link InternalIterator.value}. */
  value(): Uint8Array {
    return this.it!.value();
  }
}
