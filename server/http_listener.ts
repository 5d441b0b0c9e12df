/**
 * The node's HTTP port. Deno.serve has no connection cap, no idle or header timeout, and its
 * server dies for good when accept fails with EMFILE; so the public port is a plain TCP listener
 * with the node's {@link AcceptLoop} (survives accept errors, caps connections) that relays each
 * connection to a Deno.serve bound on a private loopback port, enforcing on the way:
 *
 * - a first byte, and the end of every request's headers (at most 64 KiB of them), within
 *   `limits.request_timeout_ms` (HTTP/1; an HTTP/2 connection with prior knowledge, recognized by
 *   its preface, is relayed as it is: its framing and limits are the private server's);
 * - `limits.idle_timeout_ms` without a byte in either direction closes the connection (one timer
 *   per connection, re-armed when it fires, not per chunk);
 * - at most one 16 KiB chunk in flight per direction (the relay awaits each write).
 *
 * Bodies are limited and timed by the handler (`readBody` in http.ts). If the private server
 * stops, it is started again (with back-off); {@link HttpListener.problem} reports it meanwhile.
 *
 * @module
 */
import type { Logger } from "../raft/logger.ts";
import { SlowReaderError } from "./watch_stream.ts";
import type { NodeLimits } from "../config/limits.ts";
import { AcceptLoop } from "../transport/listener.ts";
import { parseAddress } from "../client/connection.ts";
import { listenStream, type PeerConn, type ServerTlsMaterial } from "../transport/peer_conn.ts";

/** Largest request head (request line and headers) relayed. */
export const MAX_HEADER_BYTES = 64 * 1024;
const CHUNK_BYTES = 16 * 1024;
/** The first bytes of an HTTP/2 connection (RFC 9113 §3.4). */
const H2_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Options of {@link HttpListener}. */
export interface HttpListenerOptions {
  /** "host:port" to bind. */
  listen: string;
  /** The request handler. */
  handler: (req: Request) => Response | Promise<Response>;
  /** Where to log. */
  logger: Logger;
  /** Connection cap and timeouts. */
  limits: NodeLimits;
  /** TLS, terminated here at the public listener (default: plaintext). */
  tls?: ServerTlsMaterial;
}

/** The HTTP port: public guarded listener, private Deno.serve. */
export class HttpListener {
  #loop: AcceptLoop<PeerConn> | undefined;
  #inner: Deno.HttpServer<Deno.NetAddr> | undefined;
  #innerPort = 0;
  #warnedPort = -1;
  #innerProblem: string | undefined;
  #closing = false;
  #conns = new Set<PeerConn>();
  #restarts: Promise<void> = Promise.resolve();

  /** Creates the listener (call {@link start}). */
  constructor(private readonly o: HttpListenerOptions) {}

  /** Binds the public port, starts the private server; returns the public address. */
  async start(): Promise<Deno.NetAddr> {
    const { hostname, port } = parseAddress(this.o.listen);
    const listener = await listenStream(hostname, port, this.o.tls);
    try {
      this.#serveInner();
    } catch (e) {
      listener.close();
      throw e;
    }
    this.#loop = new AcceptLoop<PeerConn>(listener, {
      name: "http",
      maxConnections: this.o.limits.maxConnections,
      logger: this.o.logger,
    }, (conn, release) => {
      this.#conns.add(conn);
      this.#relay(conn).catch((e) =>
        this.o.logger.debug("http connection failed", { error: String(e) })
      ).finally(() => {
        this.#conns.delete(conn);
        release();
      });
    });
    return { transport: "tcp", hostname, port: listener.port };
  }

  /** Why the HTTP port cannot serve now (undefined when it can). */
  get problem(): string | undefined {
    return this.#loop?.problem ?? this.#innerProblem;
  }

  /** The public accept loop. */
  get acceptLoop(): AcceptLoop<PeerConn> | undefined {
    return this.#loop;
  }

  #serveInner(): void {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: () => {},
      onError: (e) => {
        if (e instanceof SlowReaderError) {
          // A watch stream dropped because its reader took nothing (server/watch_stream.ts):
          // the client's doing, expected, and counted in gokv_watch_slow_readers_total.
          this.o.logger.warn("watch stream dropped: its reader stopped reading", {
            error: e.message,
          });
        } else this.o.logger.error("http handler failed", { error: (e as Error)?.message });
        return new Response(JSON.stringify({ error: "internal" }), { status: 500 });
      },
    }, this.o.handler);
    this.#inner = server;
    this.#innerPort = server.addr.port;
    this.#innerProblem = undefined;
    server.finished.then(
      () => this.#innerStopped(server, "stopped"),
      (e) => this.#innerStopped(server, String((e as Error)?.message ?? e)),
    );
  }

  #innerStopped(server: Deno.HttpServer<Deno.NetAddr>, why: string): void {
    if (this.#closing || server !== this.#inner) return;
    this.#innerProblem = `http server stopped: ${why}`;
    this.o.logger.warn("http server stopped; starting it again", { error: why });
    this.#restarts = this.#restarts.then(async () => {
      let backoff = 50;
      while (!this.#closing) {
        await new Promise((r) => setTimeout(r, backoff));
        if (this.#closing) return;
        try {
          this.#serveInner();
          this.o.logger.info("http server started again", {});
          return;
        } catch (e) {
          this.#innerProblem = `http server cannot start: ${(e as Error).message}`;
          backoff = Math.min(1000, backoff * 2);
        }
      }
    });
  }

  async #relay(client: PeerConn): Promise<void> {
    const { requestTimeoutMs, idleTimeoutMs } = this.o.limits;
    let upstream: Deno.TcpConn | undefined;
    let closed = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let reason = "";
    const close = (why: string) => {
      if (closed) return;
      closed = true;
      reason = why;
      clearTimeout(timer);
      for (const c of [client, upstream]) {
        try {
          c?.close();
        } catch { /* closed */ }
      }
    };
    // Request-head state: waiting for the end of a head since `headStart` (0: not in a head).
    let headStart = Date.now();
    let headBytes = 0;
    let tail = 0; // how much of "\r\n\r\n" the last bytes matched
    let responded = true;
    // One timer per connection, not one per chunk: it fires at the earliest deadline (the head's
    // or the idle one from the last byte) and re-arms itself while the connection is active.
    let lastActivity = Date.now();
    const deadline = () =>
      headStart > 0 ? headStart + requestTimeoutMs : lastActivity + idleTimeoutMs;
    const check = () => {
      timer = undefined;
      if (closed) return;
      const now = Date.now();
      if (now >= deadline()) {
        close(headStart > 0 ? "request head not received in time" : "idle");
        return;
      }
      armedFor = deadline();
      timer = setTimeout(check, Math.max(1, armedFor - now));
    };
    const arm = () => {
      lastActivity = Date.now();
      // A head that starts now may have an earlier deadline than the armed timer's: re-arm.
      if (timer === undefined || (headStart > 0 && headStart + requestTimeoutMs < armedFor)) {
        clearTimeout(timer);
        armedFor = deadline();
        timer = setTimeout(check, Math.max(1, armedFor - lastActivity));
      }
    };
    let armedFor = 0;
    arm();
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#innerPort });
    } catch (e) {
      close("private server unreachable");
      // Once per private server (it fails for every connection while it is down).
      if (this.#warnedPort !== this.#innerPort) {
        this.#warnedPort = this.#innerPort;
        this.o.logger.warn("http relay: private server unreachable", { error: String(e) });
      }
      return;
    }
    if (closed) {
      upstream.close();
      return;
    }
    // No Nagle on the private hop: an HTTP/2 connection carries many small frames at once, and
    // a frame held back until the previous one is acknowledged waits for a delayed ACK.
    try {
      upstream.setNoDelay(true);
    } catch { /* not fatal */ }
    const up = upstream;
    // HTTP/2 with prior knowledge (Deno's KV Connect client speaks it) starts with the connection
    // preface and has no request heads to scan: its framing and header limits are the private
    // server's; the idle timeout still applies.
    let preface = 0; // bytes of H2_PREFACE matched so far; -1: HTTP/1
    const scanHead = (b: Uint8Array) => {
      if (preface === H2_PREFACE.length) return;
      if (preface >= 0) {
        for (let i = 0; i < b.length && preface < H2_PREFACE.length; i++) {
          if (b[i] !== H2_PREFACE[preface]) {
            preface = -1;
            break;
          }
          preface++;
        }
        if (preface === H2_PREFACE.length) {
          headStart = 0;
          return;
        }
      }
      for (let i = 0; i < b.length; i++) {
        if (headStart === 0) {
          if (!responded) continue; // body bytes of the current request
          headStart = Date.now();
          headBytes = 0;
          tail = 0;
        }
        headBytes++;
        const c = b[i];
        const want = tail === 0 || tail === 2 ? 13 : 10;
        tail = c === want ? tail + 1 : (c === 13 ? 1 : 0);
        if (tail === 4) {
          headStart = 0;
          responded = false;
        } else if (headBytes > MAX_HEADER_BYTES) {
          close("request head too large");
          return;
        }
      }
    };
    const pump = async (
      from: Pick<PeerConn, "read" | "write">,
      to: Pick<PeerConn, "read" | "write">,
      fromClient: boolean,
    ) => {
      const buf = new Uint8Array(CHUNK_BYTES);
      try {
        while (!closed) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.subarray(0, n);
          if (fromClient) scanHead(chunk);
          else responded = true;
          if (closed) break;
          arm();
          let off = 0;
          while (off < n) off += await to.write(chunk.subarray(off));
          arm();
        }
      } catch { /* closed */ }
      close(fromClient ? "client closed" : "server closed");
    };
    await Promise.all([pump(client, up, true), pump(up, client, false)]);
    if (reason !== "client closed" && reason !== "server closed") {
      this.o.logger.info("closing http connection", { reason });
    }
  }

  /** Stops accepting, lets in-flight requests finish (Deno.serve shutdown), closes all. */
  async shutdown(): Promise<void> {
    this.#closing = true;
    await this.#loop?.close();
    await this.#inner?.shutdown().catch(() => {});
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await this.#restarts;
  }
}
