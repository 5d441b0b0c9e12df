/**
 * Bounded watch streams: what a node holds for a watcher that does not keep up.
 *
 * A watch stream (HTTP Server-Sent Events, KV Connect's watch) is produced by a loop that polls
 * the change history ({@link WatchHub}) and queues what it finds for the reader. The queue is
 * this module's, not the ReadableStream's (its high-water mark is 0: the stream pulls one chunk
 * whenever its consumer reads, Deno.serve reading only as fast as the socket drains), so it is
 * counted exactly. The producer asks for {@link WatchStream.room} before each poll and each
 * event: while the queue holds `limits.send_buffer_bytes` or more, it waits, so a slow reader
 * makes its watch poll less often, never makes the node buffer more (at most the bound plus one
 * event and a final error event). Nothing else waits for it: the history is the node's and is
 * trimmed by its own bounds, the loop polls it from the stream's position, so writes and other
 * watchers are unaffected.
 *
 * A reader that takes nothing for `limits.request_timeout_ms` while its stream is at the bound is
 * too slow: {@link WatchStream.room} throws {@link SlowReaderError}, and the producer ends the
 * stream with a final event (SSE: `event: error`, `{"error":"watch_slow_reader", ...}`). The
 * reader gets every event queued before it and resumes after the last one it received
 * (`Last-Event-ID`), from the history. A stream whose reader still takes nothing for that long
 * after its end is dropped (its queue freed, the response aborted).
 *
 * {@link WatchStreams} counts the node's streams and their queued bytes for the metrics
 * (`gokv_watch_streams`, `gokv_watch_buffered_bytes`, `gokv_watch_slow_readers_total`).
 *
 * @module
 */
import type { NodeLimits } from "../config/limits.ts";

/** A watch stream's reader took nothing for the stall time while the stream was at its bound. */
export class SlowReaderError extends Error {
  /** Creates the error. */
  constructor(readonly maxBytes: number, readonly stallMs: number) {
    super(
      `the watch's reader took nothing for ${stallMs} ms while ${maxBytes} bytes ` +
        `(send_buffer_bytes) were queued for it; resume after the last event received`,
    );
    this.name = "SlowReaderError";
  }
}

/**
 * Waits for a writer's progress: `arm` is handed the wake-up to call when the reader takes
 * something (and `undefined` once the wait is over); true when it was called within `ms`, false
 * when `ms` passed first. The one stall rule of a bounded queue, for watch streams here and for
 * the client port's responses (server/client_server.ts).
 */
export function progressWithin(
  ms: number,
  arm: (wake: (() => void) | undefined) => void,
): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      arm(undefined);
      resolve(false);
    }, ms);
    arm(() => {
      clearTimeout(timer);
      arm(undefined);
      resolve(true);
    });
  });
}

/** The watch streams of one node: their bound, and what they hold (the metrics). */
export class WatchStreams {
  #bytes = 0;
  #open = 0;
  #slow = 0;
  /** The bound of each stream's queue (bytes). */
  readonly maxBytes: number;
  /** How long a reader may take nothing from a stream at its bound (ms). */
  readonly stallMs: number;

  /** Takes the bound and stall time from the node's limits (`send_buffer_bytes`,
   * `request_timeout_ms`). */
  constructor(limits: Pick<NodeLimits, "sendBufferBytes" | "requestTimeoutMs">) {
    this.maxBytes = limits.sendBufferBytes;
    this.stallMs = limits.requestTimeoutMs;
  }

  /** Bytes queued for readers, over all open streams. */
  get bufferedBytes(): number {
    return this.#bytes;
  }

  /** Streams open (not yet read to their end, cancelled or dropped). */
  get open(): number {
    return this.#open;
  }

  /** Streams ended because their reader was too slow, since the node started. */
  get slowReaders(): number {
    return this.#slow;
  }

  /** Opens a stream. `onEnd` runs once when it ends for good (read to its end, cancelled by the
   * reader or dropped). */
  stream(onEnd?: () => void): WatchStream {
    this.#open++;
    return new WatchStream(this, (d) => this.#bytes += d, () => this.#slow++, () => {
      this.#open--;
      onEnd?.();
    });
  }
}

/** One bounded stream of bytes for one watcher (see the module documentation). */
export class WatchStream {
  /** What the response sends. */
  readonly readable: ReadableStream<Uint8Array>;
  #ctl!: ReadableStreamDefaultController<Uint8Array>;
  #queue: Uint8Array[] = [];
  #head = 0;
  #bytes = 0;
  /** Resolves the stream's pending pull (the reader waits for a chunk). */
  #pulling: (() => void) | undefined;
  /** Resolves the producer's pending {@link room}. */
  #roomWaiter: (() => void) | undefined;
  #ended = false;
  #done = false;
  #dropTimer: ReturnType<typeof setTimeout> | undefined;
  #ac = new AbortController();

  /** Created by {@link WatchStreams.stream}. */
  constructor(
    private readonly streams: WatchStreams,
    private readonly count: (delta: number) => void,
    private readonly countSlow: () => void,
    private readonly onDone: () => void,
  ) {
    this.readable = new ReadableStream<Uint8Array>({
      start: (ctl) => {
        this.#ctl = ctl;
      },
      pull: () => {
        if (this.#deliver()) return;
        return new Promise<void>((r) => this.#pulling = r);
      },
      cancel: () => this.#finish(),
    }, { highWaterMark: 0 });
  }

  /** Aborted when the stream is over for the producer: ended, cancelled by the reader, dropped. */
  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  /** Bytes queued, not yet taken by the reader. */
  get buffered(): number {
    return this.#bytes;
  }

  /** Whether the queue is below its bound. */
  get hasRoom(): boolean {
    return this.#bytes < this.streams.maxBytes;
  }

  /**
   * Resolves when the queue is below its bound (at once if it is), or when the stream is over
   * (see {@link signal}); throws {@link SlowReaderError} when the reader takes nothing for the
   * stall time meanwhile.
   */
  room(): Promise<void> {
    if (this.hasRoom || this.#ended || this.#done) return Promise.resolve();
    return progressWithin(this.streams.stallMs, (w) => this.#roomWaiter = w).then((woke) => {
      if (woke) return;
      this.countSlow();
      throw new SlowReaderError(this.streams.maxBytes, this.streams.stallMs);
    });
  }

  /** Queues `chunk` for the reader (the producer checks {@link room} first: this never waits or
   * refuses); nothing once the stream is over. */
  send(chunk: Uint8Array): void {
    if (this.#ended || this.#done || chunk.length === 0) return;
    if (this.#pulling) {
      // The reader is waiting: straight to it, nothing queued.
      const r = this.#pulling;
      this.#pulling = undefined;
      this.#ctl.enqueue(chunk);
      r();
      return;
    }
    this.#queue.push(chunk);
    this.#add(chunk.length);
  }

  /**
   * Ends the stream after what is queued and `final` (queued past the bound: a final error
   * event). The reader gets all of it, then the end; one that takes nothing for the stall time
   * is dropped (the queue freed, the stream errored).
   */
  end(final?: Uint8Array): void {
    if (this.#ended || this.#done) return;
    if (final) this.send(final);
    this.#ended = true;
    this.#ac.abort();
    this.#wakeProducer();
    if (this.#pulling) {
      const r = this.#pulling;
      this.#pulling = undefined;
      this.#deliver();
      r();
      return;
    }
    this.#armDrop();
  }

  /** After the end: drops the stream when its reader takes nothing for the stall time. */
  #armDrop(): void {
    clearTimeout(this.#dropTimer);
    this.#dropTimer = setTimeout(() => {
      if (this.#done) return;
      try {
        this.#ctl.error(new SlowReaderError(this.streams.maxBytes, this.streams.stallMs));
      } catch { /* already closed */ }
      this.#finish();
    }, this.streams.stallMs);
  }

  /** Hands the reader the next queued chunk, or the end; false when there is nothing yet. */
  #deliver(): boolean {
    if (this.#done) return true;
    if (this.#head < this.#queue.length) {
      const c = this.#queue[this.#head];
      this.#queue[this.#head++] = EMPTY;
      if (this.#head === this.#queue.length) {
        this.#queue = [];
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      this.#add(-c.length);
      this.#ctl.enqueue(c);
      if (this.#ended) this.#armDrop();
      else if (this.hasRoom) this.#wakeProducer();
      return true;
    }
    if (!this.#ended) return false;
    try {
      this.#ctl.close();
    } catch { /* cancelled */ }
    this.#finish();
    return true;
  }

  #add(delta: number): void {
    this.#bytes += delta;
    this.count(delta);
  }

  #wakeProducer(): void {
    this.#roomWaiter?.();
  }

  /** Over for good: the queue freed, the producer stopped. */
  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#ended = true;
    clearTimeout(this.#dropTimer);
    this.#queue = [];
    this.#head = 0;
    this.#add(-this.#bytes);
    this.#ac.abort();
    this.#wakeProducer();
    const r = this.#pulling;
    this.#pulling = undefined;
    r?.();
    this.onDone();
  }
}

const EMPTY = new Uint8Array(0);
