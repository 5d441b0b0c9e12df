/**
 * Concatenating iterator over the sorted, disjoint table files of one level
 * (L1+), opening each table only when reached.
 * @module
 */
import { compareUserToInternal } from "./internal_key.ts";
import type { InternalIterator } from "./iterator.ts";
import type { TableReader } from "./sstable_reader.ts";
import type { FileMeta } from "./version_edit.ts";

/** Index of the first file whose largest user key >= key. */
export function findFile(files: FileMeta[], key: Uint8Array): number {
  let lo = 0;
  let hi = files.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareUserToInternal(key, files[mid].largest) > 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Iterator over a level's files in key order. */
export class LevelIterator implements InternalIterator {
  private fi = -1;
  private it: InternalIterator | undefined;
  constructor(
    private readonly files: FileMeta[],
    private readonly open: (f: FileMeta) => TableReader,
  ) {}
  private load(i: number): boolean {
    if (i < 0 || i >= this.files.length) {
      this.fi = -1;
      this.it = undefined;
      return false;
    }
    this.fi = i;
    this.it = this.open(this.files[i]).iterator();
    return true;
  }
  private skipForward(): void {
    while (this.it !== undefined && !this.it.valid()) {
      if (!this.load(this.fi + 1)) return;
      this.it!.seekToFirst();
    }
  }
  valid(): boolean {
    return this.it !== undefined && this.it.valid();
  }
  seekToFirst(): void {
    if (this.load(0)) this.it!.seekToFirst();
    this.skipForward();
  }
  seek(key: Uint8Array, seq: number): void {
    if (this.load(findFile(this.files, key))) this.it!.seek(key, seq);
    this.skipForward();
  }
  seekLT(key: Uint8Array): void {
    let i = findFile(this.files, key);
    if (i >= this.files.length) {
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
  seekToLast(): void {
    if (this.load(this.files.length - 1)) this.it!.seekToLast();
  }
  next(): void {
    this.it!.next();
    this.skipForward();
  }
  userKey(): Uint8Array {
    return this.it!.userKey();
  }
  seq(): number {
    return this.it!.seq();
  }
  kind(): number {
    return this.it!.kind();
  }
  value(): Uint8Array {
    return this.it!.value();
  }
}
