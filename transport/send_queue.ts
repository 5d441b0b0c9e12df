/**
 * A bounded FIFO used as the per-peer send queue: bounded in items and in bytes; a push that
 * would exceed either bound is refused (the caller drops the message; Raft retries).
 *
 * @module
 */

/** A bounded FIFO of items with a byte size each. */
export class SendQueue<T> {
  #items: T[] = [];
  #sizes: number[] = [];
  #head = 0;
  #bytes = 0;

  /** Creates a queue holding at most `maxItems` items and `maxBytes` bytes. */
  constructor(readonly maxItems: number, readonly maxBytes: number) {}

  /** Items queued. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Bytes queued. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends `item` unless a bound would be exceeded; returns whether it was queued. */
  push(item: T, size: number): boolean {
    if (this.length >= this.maxItems) return false;
    // A single item larger than the byte bound is still accepted into an empty queue.
    if (this.#bytes + size > this.maxBytes && this.length > 0) return false;
    this.#items.push(item);
    this.#sizes.push(size);
    this.#bytes += size;
    return true;
  }

  /** The first item, or undefined. */
  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  /** The size of the first item (0 when empty). */
  peekSize(): number {
    return this.#head < this.#sizes.length ? this.#sizes[this.#head] : 0;
  }

  /** Removes and returns the first item. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#bytes -= this.#sizes[this.#head];
    this.#items[this.#head] = undefined as T;
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#sizes = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Drops everything; returns how many items were dropped. */
  clear(): number {
    const n = this.length;
    this.#items = [];
    this.#sizes = [];
    this.#head = 0;
    this.#bytes = 0;
    return n;
  }
}
