/**
 * The TCP transport (the default): length-prefixed, checksummed binary frames
 * (transport/frame.ts) over one long-lived outbound connection per peer.
 *
 * - Outbound: `send` encodes each message into a frame at once and queues it in the peer's
 *   bounded queue (dropped when full). One writer loop per peer dials on demand (with a timeout),
 *   sends a Hello frame, then writes queued frames without waiting for anything (pipelining),
 *   coalescing many small frames into one write. A dial or write failure drops what was queued,
 *   reports the peer unreachable and backs off (exponential, with jitter) before the next dial.
 *   TCP_NODELAY is set on every connection.
 * - Inbound: every accepted connection must start with a Hello naming this node; after that
 *   only Message frames from that sender, addressed to this node, of a kind that may cross the
 *   network. Anything else (garbage, truncated or oversized frames, a wrong version, invalid
 *   fields) closes that one connection with a `logger.warn` giving the reason.
 * - Security (options `security`): with a cluster secret the Hello starts a challenge-response
 *   (transport/peer_auth.ts) that both sides must pass before any message; with TLS material the
 *   connections are mutual TLS (transport/peer_conn.ts) and the certificate's common name must be
 *   `node-<id>` of the Hello's sender. A Hello from a node that is not a current peer, or a
 *   message from a peer removed since, is refused and counted in {@link TcpStats}.
 *
 * @module
 */
import { PeerTable } from "./peer_table.ts";
import { AcceptLoop } from "./listener.ts";
import { MAX_PEER_HELLO_BYTES } from "../config/limits.ts";
import { type Logger, nullLogger } from "../raft/logger.ts";
import type { MessageHandler } from "../raft/transport.ts";
import { type Message, MessageType, type NodeId, NONE } from "../raft/types.ts";
import { EncodeError, FrameError, ProtocolError } from "./errors.ts";
import {
  decodeHello,
  encodeFrame,
  encodeHello,
  FRAME_HEADER_BYTES,
  FRAME_TRAILER_BYTES,
  FrameDecoder,
  FrameType,
  type Hello,
  writeMessageFrame,
} from "./frame.ts";
import { decodeMessage, encodedMessageSize } from "./message_codec.ts";
import { dialPeer, listenPeer, type PeerConn, type PeerListener } from "./peer_conn.ts";
import { newNonce, NONCE_BYTES, peerProof, PROOF_BYTES, proofMatches } from "./peer_auth.ts";
import {
  backoffDelay,
  formatAddress,
  isLocalMessage,
  parseAddress,
  type PeerTransport,
  type ResolvedOptions,
  resolveOptions,
  type TransportOptions,
} from "./options.ts";

/** Initial size of a peer's output buffer. */
const OUT_INITIAL_BYTES = 64 * 1024;
/** Output buffers up to this size are reused; larger ones are released after their write. */
const OUT_KEEP_BYTES = 1024 * 1024;
const READ_BUFFER_BYTES = 256 * 1024;

/** Statistics of one transport, for tests and metrics. */
export interface TcpStats {
  /** Messages dropped because a queue was full, a peer unknown or unreachable. */
  dropped: number;
  /** Inbound connections closed because of bad input. */
  rejectedConnections: number;
  /** Inbound connections refused because the dialer did not authenticate, by reason. */
  unauthenticated: Record<string, number>;
  /** Messages dropped because their sender is not (or no longer) a member. */
  nonMemberDropped: number;
}

/** ProtocolError reasons that mean "this dialer did not prove it is a member". */
const AUTH_REASONS = new Set(["unknown-peer", "unauthenticated", "bad-proof", "wrong-identity"]);

/** The TCP {@link PeerTransport}. */
export class TcpTransport implements PeerTransport {
  /** Always "tcp". */
  readonly kind = "tcp";
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  readonly #peers = new PeerTable<TcpPeer>();
  readonly #inbound = new Set<PeerConn>();
  readonly #tasks = new Set<Promise<void>>();
  #listener: PeerListener | null = null;
  #accept: AcceptLoop<PeerConn> | null = null;
  #starting = false;
  #handler: MessageHandler | null = null;
  #address = "";
  #closed = false;
  /** Counters (see {@link TcpStats}). */
  readonly stats: TcpStats = {
    dropped: 0,
    rejectedConnections: 0,
    unauthenticated: {},
    nonMemberDropped: 0,
  };

  /** Creates a transport; nothing is bound or dialed until used. */
  constructor(opts: TransportOptions) {
    this.#log = opts.logger ?? nullLogger;
    this.#o = resolveOptions(opts, this.#log);
    for (const [id, addr] of this.#o.peers) this.addPeer(id, addr);
  }

  /** The bound address (after `start`). */
  get address(): string {
    return this.#address;
  }

  /** Binds the listen address and starts accepting peers. */
  async start(handler: MessageHandler): Promise<void> {
    if (this.#closed) throw new Error("transport closed");
    if (this.#listener !== null || this.#starting) throw new Error("transport already started");
    this.#starting = true;
    const { hostname, port } = parseAddress(this.#o.listen);
    const u = this.stats.unauthenticated;
    const listener = await listenPeer( // may throw
      hostname,
      port,
      this.#o.security.tls,
      () => u["tls-handshake"] = (u["tls-handshake"] ?? 0) + 1,
    );
    if (this.#closed) {
      listener.close();
      throw new Error("transport closed");
    }
    this.#listener = listener;
    this.#address = formatAddress(hostname, listener.port);
    this.#handler = handler;
    this.#accept = new AcceptLoop<PeerConn>(listener, {
      name: "peer",
      maxConnections: this.#o.maxConnections,
      logger: this.#log,
    }, (conn, release) => {
      if (this.#closed) {
        closeQuietly(conn);
        release();
        return;
      }
      this.#inbound.add(conn);
      this.#track(this.#serve(conn).finally(release));
    });
    this.#track(this.#accept.done);
    this.#log.info("transport: tcp listening", {
      id: this.#o.id,
      address: this.#address,
      tls: this.#o.security.tls !== undefined,
      secret: this.#o.security.secret !== undefined,
    });
  }

  /** Queues messages; never throws, never blocks. */
  send(msgs: Message[]): void {
    if (this.#closed) return;
    for (const m of msgs) {
      if (isLocalMessage(m.type)) {
        this.#log.debug("transport: local message not sent", { type: m.type });
        continue;
      }
      const peer = this.#peers.get(m.to);
      if (peer === undefined) {
        this.stats.dropped++;
        this.#log.debug("transport: message to unknown peer dropped", { to: m.to, type: m.type });
        continue;
      }
      try {
        const size = encodedMessageSize(m);
        if (size > this.#o.maxFrameBytes) {
          throw new EncodeError(
            "message",
            `encoded size ${size} exceeds max frame ${this.#o.maxFrameBytes}`,
          );
        }
        peer.enqueue(m, size);
      } catch (e) {
        this.stats.dropped++;
        this.#log.warn("transport: message not encodable, dropped", {
          to: m.to,
          type: m.type,
          error: String(e),
        });
      }
    }
  }

  /** Adds `id` or changes its address (an existing connection is replaced). */
  addPeer(id: NodeId, address: string): void {
    if (this.#closed || id === this.#o.id || id === NONE) return;
    this.#peers.upsert(id, address, () => new TcpPeer(this, id, address));
  }

  /** Forgets `id` and closes its connection. */
  removePeer(id: NodeId): void {
    this.#peers.remove(id);
  }

  /** Why inbound peers cannot connect now (undefined when they can). */
  get problem(): string | undefined {
    return this.#closed ? undefined : this.#accept?.problem;
  }

  /** Stops listening, closes every connection and waits for all loops to end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    void this.#accept?.close();
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    for (const c of this.#inbound) closeQuietly(c);
    this.#peers.closeAll();
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  // ---- internals shared with TcpPeer ----

  /** @internal */
  get options(): ResolvedOptions {
    return this.#o;
  }

  /** @internal */
  get logger(): Logger {
    return this.#log;
  }

  /** @internal */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Runs `p` as a tracked background task that `close` waits for. */
  track(p: Promise<void>): void {
    this.#track(p);
  }

  /** @internal Tells the Raft driver that `peer` could not be reached. */
  reportUnreachable(peer: NodeId): void {
    if (!this.#o.reportUnreachable || this.#closed || this.#handler === null) return;
    this.#deliver({
      type: MessageType.Unreachable,
      to: this.#o.id,
      from: peer,
      term: 0,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: new Uint8Array(0),
      snapshot: null,
    });
  }

  #track(p: Promise<void>): void {
    const t = p.catch((e) => this.#log.error("transport: task failed", { error: String(e) }))
      .finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  #deliver(m: Message): void {
    try {
      this.#handler?.(m);
    } catch (e) {
      this.#log.error("transport: message handler threw", { type: m.type, error: String(e) });
    }
  }

  /** Checks a Hello: addressed here, from a member, with the credential the config requires. */
  async #admit(conn: PeerConn, hello: Hello): Promise<Uint8Array | null> {
    if (hello.to !== this.#o.id) {
      throw new ProtocolError("wrong-node", `hello for node ${hello.to}, this is ${this.#o.id}`);
    }
    if (this.#o.membersOnly && this.#peers.get(hello.from) === undefined) {
      throw new ProtocolError("unknown-peer", `node ${hello.from} is not a member`);
    }
    const sec = this.#o.security;
    if (sec.tls !== undefined && conn.peerCommonName !== `node-${hello.from}`) {
      throw new ProtocolError(
        "wrong-identity",
        `hello from node ${hello.from} with a certificate for ${conn.peerCommonName}`,
      );
    }
    if (sec.secret === undefined) return null;
    if (hello.nonce === undefined) {
      throw new ProtocolError("unauthenticated", "hello without a nonce (no cluster secret)");
    }
    const nonceB = newNonce();
    const p = new Uint8Array(NONCE_BYTES + PROOF_BYTES);
    p.set(nonceB);
    p.set(
      peerProof(sec.secret, "receiver", hello.from, hello.to, hello.nonce, nonceB),
      NONCE_BYTES,
    );
    await writeFully(conn, encodeFrame(FrameType.Challenge, p));
    return peerProof(sec.secret, "dialer", hello.from, hello.to, hello.nonce, nonceB);
  }

  async #serve(conn: PeerConn): Promise<void> {
    const dec = new FrameDecoder(this.#o.maxFrameBytes);
    const buf = new Uint8Array(READ_BUFFER_BYTES);
    const remote = conn.remote;
    let hello: Hello | null = null;
    /** The dialer's expected proof while a challenge is outstanding. */
    let expect: Uint8Array | null = null;
    let ready = false;
    try {
      for (;;) {
        let n: number | null;
        // A frame left half-sent for too long, or a connection that does not say Hello in
        // time, is closed (it would pin memory or a descriptor).
        let stalled = false;
        const timer = dec.buffered > 0 || !ready
          ? setTimeout(() => {
            stalled = true;
            closeQuietly(conn);
          }, this.#o.stallTimeoutMs)
          : undefined;
        try {
          n = await conn.read(buf);
        } catch (e) {
          if (this.#closed) return;
          if (!stalled) {
            this.#log.debug("transport: inbound read failed", { remote, error: String(e) });
            return;
          }
          n = null;
        } finally {
          clearTimeout(timer);
        }
        if (stalled && !this.#closed) {
          if (!ready && dec.buffered === 0) {
            throw new ProtocolError(
              hello === null ? "expected-hello" : "unauthenticated",
              `no ${hello === null ? "Hello" : "Auth"} within ${this.#o.stallTimeoutMs} ms`,
            );
          }
          throw new FrameError(
            "truncated",
            `no progress inside a frame for ${this.#o.stallTimeoutMs} ms`,
          );
        }
        if (n === null) {
          dec.finish();
          if (hello !== null && !ready) {
            // A dialer whose check of our proof failed (another secret) hangs up here.
            throw new ProtocolError("unauthenticated", "closed before Auth");
          }
          return;
        }
        dec.push(buf.subarray(0, n));
        for (let f = dec.next(); f !== null; f = dec.next()) {
          if (hello === null) {
            if (f.type !== FrameType.Hello) {
              throw new ProtocolError("expected-hello", "first frame must be Hello");
            }
            hello = decodeHello(f.payload);
            expect = await this.#admit(conn, hello);
            ready = expect === null;
            continue;
          }
          if (!ready) {
            if (f.type !== FrameType.Auth) {
              throw new ProtocolError("unauthenticated", `frame type ${f.type} before Auth`);
            }
            if (!proofMatches(expect!, f.payload)) {
              throw new ProtocolError("bad-proof", `node ${hello.from} failed the challenge`);
            }
            ready = true;
            expect = null;
            continue;
          }
          if (f.type !== FrameType.Message) {
            throw new ProtocolError("duplicate-hello", "Hello after the first frame");
          }
          const m = decodeMessage(f.payload);
          if (m.to !== this.#o.id) {
            throw new ProtocolError("wrong-node", `message to ${m.to}, this is ${this.#o.id}`);
          }
          if (m.from !== hello.from) {
            throw new ProtocolError(
              "wrong-sender",
              `message from ${m.from} on ${hello.from}'s link`,
            );
          }
          if (isLocalMessage(m.type)) {
            throw new ProtocolError("local-message", `message type ${m.type} is local`);
          }
          if (this.#closed) return;
          if (this.#o.membersOnly && this.#peers.get(m.from) === undefined) {
            // Removed from the configuration since it connected: drop, count, close.
            throw new ProtocolError("unknown-peer", `node ${m.from} is no longer a member`);
          }
          this.#deliver(m);
        }
        // Before its Hello a connection is nobody: it may not make us buffer a large frame.
        if (hello === null && dec.buffered > MAX_PEER_HELLO_BYTES + 64) {
          throw new ProtocolError(
            "expected-hello",
            `more than ${MAX_PEER_HELLO_BYTES} bytes before the Hello`,
          );
        }
      }
    } catch (e) {
      if (this.#closed) return;
      this.stats.rejectedConnections++;
      const err = e as Error & { reason?: string };
      if (err.reason !== undefined && AUTH_REASONS.has(err.reason)) {
        this.stats.unauthenticated[err.reason] = (this.stats.unauthenticated[err.reason] ?? 0) + 1;
        if (err.reason === "unknown-peer") this.stats.nonMemberDropped++;
      }
      this.#log.warn("transport: closing inbound connection on bad input", {
        remote,
        peer: hello?.from,
        error: err.name,
        reason: err.reason,
        detail: err.message,
      });
    } finally {
      this.#inbound.delete(conn);
      closeQuietly(conn);
    }
  }
}

/**
 * One outbound peer: frames are encoded straight into an output buffer (the bounded send
 * queue, counted in messages and bytes); one loop swaps it with a spare buffer and writes it
 * whole, so every message queued while a write is in flight goes out in the next single write.
 */
class TcpPeer {
  readonly #t: TcpTransport;
  #out: Uint8Array = new Uint8Array(OUT_INITIAL_BYTES);
  #outDv: DataView = new DataView(this.#out.buffer);
  #outLen = 0;
  #outCount = 0;
  #spare: Uint8Array | null = null;
  #conn: PeerConn | null = null;
  #running = false;
  #closed = false;
  #wake: (() => void) | null = null;
  #failures = 0;

  constructor(t: TcpTransport, readonly id: NodeId, readonly address: string) {
    this.#t = t;
  }

  /** Encodes `m` (of encoded size `size`) into the output buffer; throws EncodeError. */
  enqueue(m: Message, size: number): void {
    if (this.#closed) return;
    const o = this.#t.options;
    const frameLen = FRAME_HEADER_BYTES + size + FRAME_TRAILER_BYTES;
    if (
      this.#outCount >= o.queueMessages ||
      (this.#outLen > 0 && this.#outLen + frameLen > o.queueBytes)
    ) {
      this.#t.stats.dropped++;
      this.#t.logger.debug("transport: send queue full, message dropped", { peer: this.id });
      return;
    }
    if (this.#outLen + frameLen > this.#out.length) {
      let cap = this.#out.length * 2;
      while (cap < this.#outLen + frameLen) cap *= 2;
      const nb = new Uint8Array(cap);
      nb.set(this.#out.subarray(0, this.#outLen));
      this.#out = nb;
      this.#outDv = new DataView(nb.buffer);
    }
    this.#outLen = writeMessageFrame(m, size, this.#out, this.#outDv, this.#outLen);
    this.#outCount++;
    if (!this.#running) {
      this.#running = true;
      this.#t.track(this.#run());
    } else {
      this.#signal();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clear();
    if (this.#conn !== null) closeQuietly(this.#conn);
    this.#signal();
  }

  #signal(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Waits until signalled (a message queued, or close), or `ms` elapsed when given. */
  #wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      this.#wake = () => {
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      };
      if (ms !== undefined) {
        timer = setTimeout(() => {
          this.#wake = null;
          resolve();
        }, ms);
      }
    });
  }

  /** Drops everything queued; returns how many messages were dropped. */
  #clear(): number {
    const n = this.#outCount;
    this.#outLen = 0;
    this.#outCount = 0;
    return n;
  }

  #drop(why: string, error?: unknown): void {
    const n = this.#clear();
    this.#t.stats.dropped += n;
    this.#t.logger.debug("transport: peer unreachable", {
      peer: this.id,
      address: this.address,
      why,
      dropped: n,
      error: error === undefined ? undefined : String(error),
    });
    this.#t.reportUnreachable(this.id);
  }

  async #run(): Promise<void> {
    const o = this.#t.options;
    while (!this.#closed) {
      if (this.#outCount === 0) {
        await this.#wait();
        continue;
      }
      if (this.#conn === null) {
        try {
          this.#conn = await this.#dial();
        } catch (e) {
          if (this.#closed) break;
          this.#drop("dial failed", e);
          const delay = backoffDelay(o, this.#failures++);
          // Wait out the backoff; messages queued meanwhile wait for the next dial.
          await this.#sleep(delay);
          continue;
        }
      }
      const conn = this.#conn;
      const count = this.#outCount;
      const batch = this.#takeBatch();
      try {
        await this.#writeAll(conn, batch);
        this.#recycle(batch);
        this.#failures = 0;
      } catch (e) {
        if (this.#closed) break;
        this.#disconnect(conn);
        this.#t.stats.dropped += count;
        this.#drop("write failed", e);
        await this.#sleep(backoffDelay(o, this.#failures++));
      }
    }
    if (this.#conn !== null) closeQuietly(this.#conn);
    this.#conn = null;
  }

  /** Sleeps `ms` unless closed first; messages queued meanwhile do not cut it short. */
  async #sleep(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!this.#closed) {
      const left = until - Date.now();
      if (left <= 0) return;
      await this.#wait(left);
    }
  }

  async #dial(): Promise<PeerConn> {
    const o = this.#t.options;
    const { hostname, port } = parseAddress(this.address);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), o.dialTimeoutMs);
    let conn: PeerConn;
    try {
      conn = await dialPeer(hostname, port, ac.signal, o.security.tls);
    } finally {
      clearTimeout(timer);
    }
    if (this.#closed) {
      closeQuietly(conn);
      throw new Error("peer closed");
    }
    try {
      const secret = o.security.secret;
      const nonce = secret === undefined ? undefined : newNonce();
      await this.#writeAll(conn, encodeHello({ from: o.id, to: this.id, nonce }));
      if (secret !== undefined) await this.#answerChallenge(conn, secret, nonce!);
    } catch (e) {
      closeQuietly(conn);
      throw e;
    }
    // The receiver never writes back; a read that ends means the connection is gone.
    this.#t.track(this.#watch(conn));
    return conn;
  }

  /** Reads the receiver's Challenge, checks its proof and sends ours (transport/peer_auth.ts). */
  async #answerChallenge(conn: PeerConn, secret: Uint8Array, nonceA: Uint8Array): Promise<void> {
    const o = this.#t.options;
    const dec = new FrameDecoder(NONCE_BYTES + PROOF_BYTES);
    const buf = new Uint8Array(256);
    const timer = setTimeout(() => closeQuietly(conn), o.dialTimeoutMs);
    let f = null;
    try {
      while (f === null) {
        const n = await conn.read(buf);
        if (n === null) throw new ProtocolError("unauthenticated", "closed before a Challenge");
        dec.push(buf.subarray(0, n));
        f = dec.next();
      }
    } finally {
      clearTimeout(timer);
    }
    if (f.type !== FrameType.Challenge || f.payload.length !== NONCE_BYTES + PROOF_BYTES) {
      throw new ProtocolError("unauthenticated", `expected a Challenge, got frame type ${f.type}`);
    }
    const nonceB = f.payload.slice(0, NONCE_BYTES);
    const want = peerProof(secret, "receiver", o.id, this.id, nonceA, nonceB);
    if (!proofMatches(want, f.payload.subarray(NONCE_BYTES))) {
      throw new ProtocolError("bad-proof", `node ${this.id} does not hold the cluster secret`);
    }
    const proof = peerProof(secret, "dialer", o.id, this.id, nonceA, nonceB);
    await this.#writeAll(conn, encodeFrame(FrameType.Auth, proof));
  }

  async #watch(conn: PeerConn): Promise<void> {
    const buf = new Uint8Array(64);
    try {
      while ((await conn.read(buf)) !== null) { /* ignore */ }
    } catch { /* closed */ }
    this.#disconnect(conn);
  }

  #disconnect(conn: PeerConn): void {
    if (this.#conn === conn) this.#conn = null;
    closeQuietly(conn);
  }

  /** Takes everything queued as one buffer and starts a fresh (spare) output buffer. */
  #takeBatch(): Uint8Array {
    const batch = this.#out.subarray(0, this.#outLen);
    const next = this.#spare ?? new Uint8Array(OUT_INITIAL_BYTES);
    this.#spare = null;
    this.#out = next;
    this.#outDv = new DataView(next.buffer);
    this.#outLen = 0;
    this.#outCount = 0;
    return batch;
  }

  /** Keeps a written buffer for reuse unless it grew large (a snapshot burst). */
  #recycle(batch: Uint8Array): void {
    if (batch.buffer.byteLength <= OUT_KEEP_BYTES) this.#spare = new Uint8Array(batch.buffer);
  }

  async #writeAll(conn: PeerConn, data: Uint8Array): Promise<void> {
    const stall = this.#t.options.stallTimeoutMs;
    let off = 0;
    while (off < data.length) {
      const timer = setTimeout(() => {
        this.#t.logger.warn("transport: write stalled, closing connection", {
          peer: this.id,
          ms: stall,
        });
        this.#disconnect(conn);
      }, stall);
      try {
        off += await conn.write(data.subarray(off));
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

function closeQuietly(c: PeerConn): void {
  c.close();
}

async function writeFully(conn: PeerConn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}
