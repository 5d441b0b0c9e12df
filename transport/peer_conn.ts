/**
 * Connections of every listening port of a node (peer, client, HTTP), plain, TLS or mutual TLS,
 * behind one small interface ({@link PeerConn}); {@link listenStream} binds one.
 *
 * Mutual TLS: Deno 2.9.6's `Deno.listenTls` cannot ask for or verify a client certificate, but
 * `node:tls` `createServer({ requestCert, rejectUnauthorized, ca })` can (a dialer without a
 * certificate, or with one from another CA, fails the handshake), and `Deno.connectTls` presents
 * a client certificate. So the receiving side listens with node:tls and the dialing side uses
 * Deno.connectTls; the verified certificate's common name is exposed as
 * {@link PeerConn.peerCommonName} so the transport can bind it to the Hello's node id.
 *
 * @module
 */
import tls from "node:tls";
import { formatAddress } from "./options.ts";

/** PEM texts for mutual TLS between peers. */
export interface PeerTlsMaterial {
  /** This node's certificate chain (PEM); its common name must be `node-<id>`. */
  cert: string;
  /** This node's private key (PEM). */
  key: string;
  /** The CA (PEM) that signed every member's certificate. */
  ca: string;
}

/** One peer connection. */
export interface PeerConn {
  /** Reads into `p`; null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves with the count written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes (idempotent). */
  close(): void;
  /** The remote `host:port`. */
  readonly remote: string;
  /** The common name of the verified client certificate (mutual TLS), else null. */
  readonly peerCommonName: string | null;
}

/** A bound peer listener. */
export interface PeerListener {
  /** The bound port. */
  readonly port: number;
  /** The next connection (after its TLS handshake, when TLS is on). */
  accept(): Promise<PeerConn>;
  /** Stops listening. */
  close(): void;
}

function plainConn(c: Deno.TcpConn): PeerConn {
  try {
    c.setNoDelay(true);
  } catch { /* not fatal */ }
  return denoConn(c, formatAddress(c.remoteAddr.hostname, c.remoteAddr.port));
}

/** A Deno connection (TCP or TLS) as a {@link PeerConn}. */
function denoConn(c: Deno.Conn, remote: string): PeerConn {
  return {
    read: (p) => c.read(p),
    write: (p) => c.write(p),
    close: () => {
      try {
        c.close();
      } catch { /* already closed */ }
    },
    remote,
    peerCommonName: null,
  };
}

/** TLS for a listening port. */
export interface ServerTlsMaterial {
  /** This node's certificate chain (PEM). */
  cert: string;
  /** This node's private key (PEM). */
  key: string;
  /** The CA (PEM) that signs client certificates (with `requestCert`). */
  ca?: string;
  /** Require a client certificate signed by `ca` (mutual TLS). */
  requestCert: boolean;
}

/**
 * Binds `hostname:port` for the client or HTTP port: plaintext without `tls`; server TLS with
 * `Deno.listenTls` (native, the handshake runs on the connection's first read or write); mutual
 * TLS with node:tls (Deno.listenTls cannot ask for a client certificate).
 */
export async function listenStream(
  hostname: string,
  port: number,
  tls?: ServerTlsMaterial,
): Promise<PeerListener> {
  if (tls === undefined) return await listenPeer(hostname, port);
  if (tls.requestCert) {
    return await TlsPeerListener.listen(hostname, port, {
      cert: tls.cert,
      key: tls.key,
      ca: tls.ca ?? "",
    });
  }
  const l = Deno.listenTls({ hostname, port, transport: "tcp", cert: tls.cert, key: tls.key });
  return {
    port: l.addr.port,
    accept: async () => {
      const c = await l.accept();
      return denoConn(c, formatAddress(c.remoteAddr.hostname, c.remoteAddr.port));
    },
    close: () => {
      try {
        l.close();
      } catch { /* already closed */ }
    },
  };
}

/** Binds `hostname:port`, with mutual TLS when `material` is given; `onTlsRefused` is called for
 * every connection whose TLS handshake failed (no or a bad certificate, plaintext). */
export async function listenPeer(
  hostname: string,
  port: number,
  material?: PeerTlsMaterial,
  onTlsRefused?: () => void,
): Promise<PeerListener> {
  if (material === undefined) {
    const l = Deno.listen({ hostname, port, transport: "tcp" });
    return {
      port: l.addr.port,
      accept: async () => plainConn(await l.accept()),
      close: () => {
        try {
          l.close();
        } catch { /* already closed */ }
      },
    };
  }
  return await TlsPeerListener.listen(hostname, port, material, onTlsRefused);
}

/** Dials a peer, with mutual TLS when `material` is given. */
export async function dialPeer(
  hostname: string,
  port: number,
  signal: AbortSignal,
  material?: PeerTlsMaterial,
): Promise<PeerConn> {
  if (material === undefined) {
    return plainConn(await Deno.connect({ hostname, port, transport: "tcp", signal }));
  }
  const c = await Deno.connectTls({
    hostname,
    port,
    caCerts: [material.ca],
    cert: material.cert,
    key: material.key,
  });
  const onAbort = () => {
    try {
      c.close();
    } catch { /* closed */ }
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await c.handshake();
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return denoConn(c, formatAddress(hostname, port));
}

/** Above this many buffered bytes the socket is paused until the reader catches up. */
const HIGH_WATER = 1024 * 1024;

/** A node:tls socket read and written like a Deno connection. */
class SocketConn implements PeerConn {
  readonly #s: tls.TLSSocket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  readonly remote: string;
  readonly peerCommonName: string | null;

  constructor(s: tls.TLSSocket) {
    this.#s = s;
    s.setNoDelay(true);
    this.remote = formatAddress(s.remoteAddress ?? "?", s.remotePort ?? 0);
    const cn = s.authorized ? s.getPeerCertificate()?.subject?.CN : undefined;
    this.peerCommonName = typeof cn === "string" ? cn : null;
    s.on("data", (d: Uint8Array) => {
      this.#chunks.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      this.#buffered += d.byteLength;
      if (this.#buffered > HIGH_WATER) s.pause();
      this.#signal();
    });
    s.on("end", () => {
      this.#ended = true;
      this.#signal();
    });
    s.on("close", () => {
      this.#ended = true;
      this.#signal();
    });
    s.on("error", (e: Error) => {
      this.#error = e;
      this.#signal();
    });
  }

  #signal(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== null) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    const c = this.#chunks[0];
    const n = Math.min(c.length, p.length);
    p.set(c.subarray(0, n));
    if (n === c.length) this.#chunks.shift();
    else this.#chunks[0] = c.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= HIGH_WATER && this.#s.isPaused()) this.#s.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#s.write(p.slice(), (e?: Error | null) => e ? reject(e) : resolve(p.length));
    });
  }

  close(): void {
    this.#s.destroy();
  }
}

class TlsPeerListener implements PeerListener {
  readonly #server: tls.Server;
  readonly #ready: PeerConn[] = [];
  #waiter: { resolve: (c: PeerConn) => void; reject: (e: Error) => void } | null = null;
  #closed = false;
  port = 0;

  private constructor(material: PeerTlsMaterial, onTlsRefused?: () => void) {
    this.#server = tls.createServer({
      cert: material.cert,
      key: material.key,
      ca: material.ca,
      requestCert: true,
      rejectUnauthorized: true,
    }, (s) => {
      const c = new SocketConn(s);
      const w = this.#waiter;
      this.#waiter = null;
      if (w !== null) w.resolve(c);
      else this.#ready.push(c);
    });
    // A failed handshake (no certificate, another CA, expired) only closes that socket.
    this.#server.on("tlsClientError", () => onTlsRefused?.());
  }

  static listen(
    hostname: string,
    port: number,
    m: PeerTlsMaterial,
    onTlsRefused?: () => void,
  ): Promise<TlsPeerListener> {
    const l = new TlsPeerListener(m, onTlsRefused);
    return new Promise((resolve, reject) => {
      l.#server.once("error", reject);
      l.#server.listen(port, hostname, () => {
        l.#server.off("error", reject);
        const a = l.#server.address();
        l.port = typeof a === "object" && a !== null ? a.port : port;
        resolve(l);
      });
    });
  }

  accept(): Promise<PeerConn> {
    if (this.#closed) return Promise.reject(new Error("listener closed"));
    const c = this.#ready.shift();
    if (c !== undefined) return Promise.resolve(c);
    return new Promise((resolve, reject) => this.#waiter = { resolve, reject });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const c of this.#ready.splice(0)) c.close();
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(new Error("listener closed"));
  }
}
