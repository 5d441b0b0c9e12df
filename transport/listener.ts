/**
 * The accept loop every TCP listener of a node uses (the peer port here, the client port and the
 * HTTP port in server/), and the byte budget that bounds what a listener's connections may hold
 * in partly received requests.
 *
 * An accept loop never dies of a transient error: EMFILE/ENFILE (out of descriptors),
 * ECONNABORTED and the like are logged, the loop backs off (doubling from 10 ms to 1 s) and goes
 * on; {@link AcceptLoop.healthy} is false from the failure until the next successful accept, and
 * {@link AcceptLoop.listening} false once the loop stopped for good (the listener was closed).
 * Connections over the cap are closed at once.
 *
 * @module
 */
import type { Logger } from "../raft/logger.ts";

/** Options of {@link AcceptLoop}. */
export interface AcceptLoopOptions {
  /** The listener's name in logs and health ("client", "http", "peer"). */
  name: string;
  /** Open connections allowed; more are closed as soon as they are accepted. */
  maxConnections: number;
  /** Where to log. */
  logger: Logger;
  /** First back-off delay after a failed accept (ms, default 10). */
  backoffMinMs?: number;
  /** Longest back-off delay (ms, default 1000). */
  backoffMaxMs?: number;
}

/** A connection the loop accepted; call `release` exactly once when it is closed. */
export type ConnHandler<C = Deno.TcpConn> = (conn: C, release: () => void) => void;

/** What the loop accepts from: a Deno listener, or the peer transport's TLS listener. */
export interface Acceptor<C> {
  /** The next connection. */
  accept(): Promise<C>;
  /** Stops listening. */
  close(): void;
}

/** Runs `listener`'s accept loop until {@link close}. */
export class AcceptLoop<C extends { close(): void } = Deno.TcpConn> {
  #open = 0;
  #closed = false;
  #failing: string | undefined;
  #stopped = false;
  /** Connections refused because the cap was reached. */
  refused = 0;
  /** Accept calls that failed (and were retried). */
  acceptErrors = 0;
  /** Resolves when the loop has stopped. */
  readonly done: Promise<void>;

  /** Starts accepting on `listener`; every connection goes to `onConn`. */
  constructor(
    private readonly listener: Acceptor<C>,
    private readonly o: AcceptLoopOptions,
    private readonly onConn: ConnHandler<C>,
  ) {
    this.done = this.#run().catch((e) => {
      this.o.logger.error(`${o.name} listener stopped`, { error: String(e) });
    }).finally(() => this.#stopped = true);
  }

  /** Open connections. */
  get connections(): number {
    return this.#open;
  }

  /** False while accepting fails (until the next connection is accepted) or once stopped. */
  get healthy(): boolean {
    return this.listening && this.#failing === undefined;
  }

  /** Why the listener is unhealthy (undefined when healthy). */
  get problem(): string | undefined {
    if (!this.listening) return `${this.o.name} listener is not accepting`;
    return this.#failing === undefined
      ? undefined
      : `${this.o.name} listener: accept failing: ${this.#failing}`;
  }

  /** False once the loop stopped (closed, or the listener is gone). */
  get listening(): boolean {
    return !this.#stopped && !this.#closed;
  }

  async #run(): Promise<void> {
    const min = this.o.backoffMinMs ?? 10;
    const max = this.o.backoffMaxMs ?? 1000;
    let backoff = min;
    while (!this.#closed) {
      let conn: C;
      try {
        conn = await this.listener.accept();
      } catch (e) {
        if (this.#closed || e instanceof Deno.errors.BadResource) return;
        this.acceptErrors++;
        const first = this.#failing === undefined;
        this.#failing = String((e as Error)?.message ?? e);
        // Log the first failure of a burst at warn, the rest at debug (EMFILE repeats fast).
        const log = first ? this.o.logger.warn : this.o.logger.debug;
        log.call(this.o.logger, `${this.o.name} listener: accept failed, backing off`, {
          error: this.#failing,
          backoffMs: backoff,
        });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(max, backoff * 2);
        continue;
      }
      if (this.#failing !== undefined) {
        this.o.logger.info(`${this.o.name} listener: accepting again`, {});
        this.#failing = undefined;
      }
      backoff = min;
      if (this.#closed) {
        closeQuietly(conn);
        return;
      }
      if (this.#open >= this.o.maxConnections) {
        this.refused++;
        this.o.logger.debug(`${this.o.name} listener: connection cap reached, closing`, {
          max: this.o.maxConnections,
        });
        closeQuietly(conn);
        continue;
      }
      this.#open++;
      let released = false;
      try {
        this.onConn(conn, () => {
          if (!released) {
            released = true;
            this.#open--;
          }
        });
      } catch (e) {
        if (!released) {
          released = true;
          this.#open--;
        }
        closeQuietly(conn);
        this.o.logger.warn(`${this.o.name} listener: connection setup failed`, {
          error: String(e),
        });
      }
    }
  }

  /** Stops accepting and closes the listener (open connections are the owner's). */
  close(): Promise<void> {
    this.#closed = true;
    try {
      this.listener.close();
    } catch { /* already closed */ }
    return this.done;
  }
}

/**
 * Bytes a listener's connections may hold in partly received requests, all together. A
 * connection takes bytes before buffering them and gives them back when the request is complete
 * or the connection closes; one that cannot take what it needs waits ({@link wait}) and is
 * dropped by its own request timeout if nothing is freed.
 */
export class ByteBudget {
  #used = 0;
  #waiters: (() => void)[] = [];

  /** Creates a budget of `max` bytes. */
  constructor(readonly max: number) {}

  /** Bytes taken. */
  get used(): number {
    return this.#used;
  }

  /** Takes `n` bytes if available. */
  tryTake(n: number): boolean {
    if (n <= 0) return true;
    if (this.#used + n > this.max) return false;
    this.#used += n;
    return true;
  }

  /** Gives `n` bytes back and wakes the waiters. */
  release(n: number): void {
    if (n <= 0) return;
    this.#used = Math.max(0, this.#used - n);
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves at the next {@link release} (or after `ms`). */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        const i = this.#waiters.indexOf(done);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.push(done);
    });
  }
}

function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
