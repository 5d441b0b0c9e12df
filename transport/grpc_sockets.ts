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
 * - Inbound sockets: {@link SocketGroup.watchServer} listens to the `connection` event of the
 *   grpc-js server's underlying http2 servers (and to `sessionError`, to log bad input).
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import net from "node:net";

const context = new AsyncLocalStorage<SocketGroup>();
let hooked = false;

/** The raw sockets that belong to one channel or one server. */
export class SocketGroup {
  readonly #sockets = new Set<net.Socket>();

  /** Sockets currently open. */
  get size(): number {
    return this.#sockets.size;
  }

  /** Files `s` in this group until it closes. */
  add(s: net.Socket): void {
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
      (h as net.Server).on("connection", (s: net.Socket) => this.add(s));
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
