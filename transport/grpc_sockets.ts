/**
 * Workaround for a Deno 2.9.6 crash (denoland/deno#36788): a process that *receives* an
 * HTTP/2 GOAWAY frame on a session that has carried streams can abort inside nghttp2
 * (`find_stream_on_goaway_func: Assertion 'stream->closed_next == NULL' failed`). grpc-js sends
 * GOAWAY whenever it closes a channel or shuts a server down, so a gRPC peer that stops or is
 * removed could kill the nodes it talked to.
 *
 * The gRPC transport therefore never closes an HTTP/2 session gracefully: it first destroys the
 * raw TCP sockets under its sessions (the peer then sees a plain connection close, which grpc-js
 * handles like any connection loss) and only then lets grpc-js close what is left.
 *
 * - Outbound sockets: grpc-js dials with `net.connect`. {@link installConnectHook} wraps it once
 *   per process and files each socket under the {@link SocketGroup} of the async context it was
 *   dialed from: the gRPC peer runs its calls inside {@link SocketGroup.run}, so connections its
 *   calls open (and reconnections that follow from them) belong to it.
 * - Inbound sockets: the gRPC server binds no port of its own. The transport accepts with the
 *   node's accept loop (transport/listener.ts: Deno's node:net server stops accepting for good
 *   after one EMFILE) and injects each connection into grpc-js as a {@link connDuplex};
 *   {@link SocketGroup.watchServer} files them, through the `connection` event of the grpc-js
 *   server's http2 servers (and listens to `sessionError`, to log bad input).
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import net from "node:net";
import { Duplex } from "node:stream";

const context = new AsyncLocalStorage<SocketGroup>();
let hooked = false;

/** The raw sockets that belong to one channel or one server. */
export class SocketGroup {
  readonly #sockets = new Set<net.Socket | Duplex>();

  /** Sockets currently open. */
  get size(): number {
    return this.#sockets.size;
  }

  /** Files `s` in this group until it closes. */
  add(s: net.Socket | Duplex): void {
    this.#sockets.add(s);
    s.once("close", () => this.#sockets.delete(s));
  }

  /** Runs `fn` so that sockets dialed from it (directly or later) join this group. */
  run<T>(fn: () => T): T {
    return context.run(this, fn);
  }

  /**
   * Files every socket that the http2 servers inside a grpc-js `Server` accept, and reports
   * their session errors to `onSessionError`. Returns false if the server's internals are not
   * as expected (then nothing is watched).
   */
  watchServer(server: unknown, onSessionError?: (e: Error) => void): boolean {
    const servers = (server as { http2Servers?: unknown }).http2Servers;
    if (!(servers instanceof Map)) return false;
    let n = 0;
    for (const h of servers.keys()) {
      if (typeof (h as net.Server)?.on !== "function") continue;
      (h as net.Server).on("connection", (s: net.Socket | Duplex) => this.add(s));
      // Bad bytes on the port (not HTTP/2, bad frames): the http2 server closes that session.
      if (onSessionError) (h as net.Server).on("sessionError", onSessionError);
      n++;
    }
    return n > 0;
  }

  /** Destroys every socket of the group (no HTTP/2 GOAWAY reaches the other side). */
  destroyAll(): void {
    for (const s of this.#sockets) {
      try {
        s.destroy();
      } catch { /* already gone */ }
    }
    this.#sockets.clear();
  }
}

/** Wraps `net.connect` (once per process) so sockets join the current {@link SocketGroup}. */
export function installConnectHook(): void {
  if (hooked) return;
  hooked = true;
  const original = net.connect;
  const hooked_connect = function (this: unknown, ...args: unknown[]): net.Socket {
    const s = (original as (...a: unknown[]) => net.Socket).apply(this, args);
    context.getStore()?.add(s);
    return s;
  };
  (net as { connect: unknown }).connect = hooked_connect;
}

/**
 * A node `Duplex` over a Deno TCP connection, for grpc-js's connection injector. Reads honour
 * back-pressure (no read while grpc-js has not consumed the last chunk); a connection that sends
 * no byte for `idleMs` while a read is pending is closed (a silent or stalled peer connection
 * would pin a descriptor and whatever half-received message it holds). Destroying the duplex
 * closes the connection (a plain close: no HTTP/2 GOAWAY).
 */
export function connDuplex(
  conn: Deno.Conn,
  idleMs: number,
  onIdle?: () => void,
): Duplex {
  let reading = false;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const d: Duplex = new Duplex({
    allowHalfOpen: false,
    read() {
      if (reading || closed) return;
      reading = true;
      (async () => {
        const buf = new Uint8Array(64 * 1024);
        for (;;) {
          let idle = false;
          const timer = setTimeout(() => {
            idle = true;
            onIdle?.();
            close();
          }, idleMs);
          let n: number | null;
          try {
            n = await conn.read(buf);
          } catch (e) {
            if (!closed && !idle) d.destroy(e as Error);
            else d.destroy();
            return;
          } finally {
            clearTimeout(timer);
          }
          if (n === null || closed) {
            // The peer hung up: an HTTP/2 connection is over (no half-open use), free the
            // descriptor now rather than when grpc-js gets round to closing the session.
            d.push(null);
            d.destroy();
            return;
          }
          if (!d.push(buf.slice(0, n))) {
            reading = false;
            return;
          }
        }
      })();
    },
    write(chunk: Uint8Array, _encoding, cb) {
      (async () => {
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
      })().then(() => cb(), (e) => cb(e as Error));
    },
    final(cb) {
      try {
        (conn as Deno.TcpConn).closeWrite?.();
      } catch { /* closed */ }
      cb();
    },
    destroy(err, cb) {
      close();
      cb(err);
    },
  });
  return d;
}
