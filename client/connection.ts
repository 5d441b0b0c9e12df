/**
 * One multiplexed TCP connection to a gokv server: many requests in flight, matched to their
 * responses by request id. Requests are encoded straight into the connection's output buffer
 * and the ones issued in the same tick go out in one socket write. Requests carry deadlines,
 * swept by one timer per connection (armed for the earliest deadline): no timer per request.
 *
 * @module
 */
import {
  decodeResponse,
  encodeRequestTo,
  FrameReader,
  FrameWriter,
  Op,
  ProtocolError,
  type RequestBody,
  type Response,
  Status,
} from "./protocol.ts";
import {
  InvalidArgumentError,
  LimitError,
  PermissionDeniedError,
  TimeoutError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.ts";

export type { RequestBody } from "./protocol.ts";

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  /** When it times out (performance.now() ms: monotonic). */
  deadline: number;
  timeoutMs: number;
}

/** A timer that does not keep the process alive (web timers are numbers, Node's objects). */
function unref(t: ReturnType<typeof setTimeout>): void {
  if (typeof t === "number") Deno.unrefTimer(t);
  else (t as { unref?: () => void }).unref?.();
}

/** Splits "host:port" (IPv6 in brackets allowed). */
export function parseAddress(addr: string): { hostname: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(addr.trim());
  if (!m) throw new UnavailableError(`bad address "${addr}" (want host:port)`);
  const port = Number(m[2]);
  if (port < 0 || port > 65535) throw new UnavailableError(`bad port in "${addr}"`);
  return { hostname: m[1] || "127.0.0.1", port };
}

/** TLS for a client connection (PEM texts). */
export interface ClientTls {
  /** The CA that signed the nodes' certificates (default: the system's roots). */
  caCert?: string;
  /** A client certificate, for nodes that require one (`tls.client_cert_auth`). */
  cert?: string;
  /** The client certificate's private key. */
  key?: string;
}

/** A client connection. Create with {@link Connection.open}. */
export class Connection {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private out = new FrameWriter(4096);
  private writing = false;
  /** The deadline sweep's timer and when it fires (Infinity: not armed). */
  private sweepTimer: ReturnType<typeof setTimeout> | undefined;
  private sweepAt = Infinity;
  private failure: Error | undefined;

  private constructor(readonly address: string, private conn: Deno.Conn) {
    this.readLoop();
  }

  /** Connects to `address` ("host:port") within `timeoutMs`, over TLS when `tls` is given.
   * Throws {@link UnavailableError} (a failed TLS handshake too: a certificate the CA did not
   * sign, an expired one, a name that does not match). */
  static async open(
    address: string,
    timeoutMs = 2000,
    tls?: ClientTls,
    token?: string,
  ): Promise<Connection> {
    const c = await Connection.#connect(address, timeoutMs, tls);
    if (token === undefined) return c;
    // The handshake: the token first; the node answers it before anything else.
    let res: Response;
    try {
      res = await c.request({ op: Op.Auth, token }, timeoutMs);
    } catch (e) {
      c.close();
      throw e instanceof TimeoutError
        ? new UnavailableError(`${address} did not answer the token handshake`)
        : e;
    }
    if (res.status === Status.Ok) return c;
    c.close();
    const why = res.message ?? "token refused";
    if (res.status === Status.PermissionDenied) throw new PermissionDeniedError(why);
    if (res.status === Status.Unauthenticated) throw new UnauthenticatedError(why);
    throw new UnavailableError(`${address} refused the token handshake: ${why}`);
  }

  static async #connect(address: string, timeoutMs: number, tls?: ClientTls): Promise<Connection> {
    const { hostname, port } = parseAddress(address);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ac = new AbortController();
    let tlsConn: Deno.TlsConn | undefined;
    const connect = async (): Promise<Deno.Conn> => {
      if (tls === undefined) {
        const c = await Deno.connect({ hostname, port, transport: "tcp", signal: ac.signal });
        c.setNoDelay(true);
        return c;
      }
      tlsConn = await Deno.connectTls({
        hostname,
        port,
        caCerts: tls.caCert ? [tls.caCert] : undefined,
        cert: tls.cert,
        key: tls.key,
      });
      await tlsConn.handshake();
      return tlsConn;
    };
    try {
      const conn = await Promise.race([
        connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            ac.abort();
            try {
              tlsConn?.close();
            } catch { /* closed */ }
            reject(new UnavailableError(`connect to ${address} timed out`));
          }, timeoutMs);
        }),
      ]);
      return new Connection(address, conn);
    } catch (e) {
      if (e instanceof UnavailableError) throw e;
      const what = tls === undefined ? "connect to" : "connect (TLS) to";
      throw new UnavailableError(`cannot ${what} ${address}: ${(e as Error).message}`, {
        cause: e,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** True once the connection failed or was closed. */
  get closed(): boolean {
    return this.failure !== undefined;
  }

  /** Requests in flight. */
  get inflight(): number {
    return this.pending.size;
  }

  /** Sends a request and waits for its response (any status) or `timeoutMs`. Rejects with
   * {@link TimeoutError} or {@link UnavailableError} (connection lost). */
  request(body: RequestBody, timeoutMs: number): Promise<Response> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    try {
      encodeRequestTo(this.out, body, id);
    } catch (e) {
      if (e instanceof LimitError) return Promise.reject(e);
      return Promise.reject(
        new InvalidArgumentError(e instanceof ProtocolError ? e.reason : String(e)),
      );
    }
    const deadline = performance.now() + timeoutMs;
    if (deadline < this.sweepAt) this.armSweep(deadline);
    if (!this.writing) {
      this.writing = true;
      queueMicrotask(() => this.writeLoop());
    }
    return new Promise<Response>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline, timeoutMs });
    });
  }

  /** (Re)arms the deadline sweep to run at `at`. */
  private armSweep(at: number): void {
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    this.sweepTimer = setTimeout(
      () => this.sweep(),
      Math.max(0, Math.ceil(at - performance.now())),
    );
    unref(this.sweepTimer);
  }

  /** Fails the requests whose deadline passed; re-arms for the earliest one left. */
  private sweep(): void {
    this.sweepTimer = undefined;
    this.sweepAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, p] of this.pending) {
      if (p.deadline <= now) {
        this.pending.delete(id);
        p.reject(new TimeoutError(`request to ${this.address} timed out`, p.timeoutMs));
      } else if (p.deadline < next) next = p.deadline;
    }
    if (next !== Infinity && !this.failure) this.armSweep(next);
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.out.length > 0 && !this.failure) {
        const buf = this.out.take();
        let off = 0;
        while (off < buf.length) off += await this.conn.write(buf.subarray(off));
        this.out.recycle(buf);
      }
    } catch (e) {
      this.fail(new UnavailableError(`write to ${this.address} failed: ${(e as Error).message}`));
    } finally {
      this.writing = false;
    }
  }

  private async readLoop(): Promise<void> {
    const frames = new FrameReader();
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        frames.push(buf.subarray(0, n));
        for (let body = frames.next(); body; body = frames.next()) {
          const res = decodeResponse(body);
          const p = this.pending.get(res.id);
          if (!p) continue; // timed out already
          this.pending.delete(res.id);
          p.resolve(res);
        }
      }
      this.fail(new UnavailableError(`connection to ${this.address} closed by the server`));
    } catch (e) {
      const reason = e instanceof ProtocolError
        ? `bad response from ${this.address}: ${e.reason}`
        : `connection to ${this.address} lost: ${(e as Error).message}`;
      this.fail(new UnavailableError(reason));
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    try {
      this.conn.close();
    } catch { /* already closed */ }
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.sweepAt = Infinity;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Closes the connection; requests in flight fail with {@link UnavailableError}. */
  close(): void {
    this.fail(new UnavailableError(`connection to ${this.address} closed`));
  }
}
