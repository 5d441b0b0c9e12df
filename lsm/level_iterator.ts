/**
 * Concatenating iterator over the sorted, disjoint table files of one level
 * (L1+), opening each table only when reached.
 * @module
 */
import { compareUserToInternal } from "./internal_key.ts";
import type { InternalIterator } from "./iterator.ts";
import { TwoLevelIterator } from "./two_level_iterator.ts";
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
export class LevelIterator extends TwoLevelIterator<InternalIterator> {
  /** Iterates `files` (sorted, disjoint), opening tables through `open`. */
  constructor(
    private readonly files: FileMeta[],
    private readonly open: (f: FileMeta) => TableReader,
  ) {
    super();
  }
  /** The number of files. */
  protected childCount(): number {
    return this.files.length;
  }
  /** An iterator over file `i`. */
  protected openChild(i: number): InternalIterator {
    return this.open(this.files[i]).iterator();
  }
  /** The first file whose largest key is >= `key`. */
  protected findChild(key: Uint8Array, _seq: number): number {
    return findFile(this.files, key);
  }
}
