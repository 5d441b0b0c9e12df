/**
 * The gRPC transport: @grpc/grpc-js with the service in transport/raft.proto.
 *
 * - `Send(Batch)` (unary) carries every kind but Snap. Each peer keeps one call in flight and
 *   batches whatever was queued meanwhile into the next call, which keeps per-peer order and
 *   still pipelines. Each unary call has the `callTimeoutMs` deadline.
 * - `SendSnapshot(stream Message)` (client stream) carries consecutive Snap chunks; it has no
 *   overall deadline (a long transfer is never cut by a per-call timeout) and honours flow
 *   control. When a non-Snap message follows, the stream is ended and acknowledged first, so
 *   order is kept across both RPCs.
 * - Same queue and drop policy as tcp: a bounded per-peer queue; failed calls drop their
 *   messages and report the peer unreachable; grpc-js reconnects with backoff bounded by
 *   `reconnectMinMs`..`reconnectMaxMs`.
 * - The server validates every message (ranges, integers, snapshot bounds, addressed to this
 *   node, not a local kind) and fails the call with INVALID_ARGUMENT and a `logger.warn`
 *   otherwise; malformed HTTP/2 input closes that connection only (grpc-js), with a warning.
 * - Deno 2.9.6 can abort a process that receives an HTTP/2 GOAWAY (denoland/deno#36788), so this
 *   transport never closes sessions gracefully: see transport/grpc_sockets.ts.
 * - The port is the node's shared accept loop (transport/listener.ts: accept errors such as
 *   EMFILE backed off, never fatal; at most `maxConnections` inbound connections; `problem`
 *   for `/healthz`), each connection injected into the gRPC server; a connection silent for
 *   `stallTimeoutMs` is closed; a connection carries at most {@link MAX_STREAMS} calls at once.
 *
 * @module
 */
import { PeerTable } from "./peer_table.ts";
import type * as grpc from "@grpc/grpc-js";
import { fileURLToPath } from "node:url";
import { Buffer } from "node:buffer";
import type { PeerTlsMaterial } from "./peer_conn.ts";
import { type Logger, nullLogger } from "../raft/logger.ts";
import type { MessageHandler } from "../raft/transport.ts";
import {
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  message,
  MessageType,
  type NodeId,
  NONE,
  type SnapshotChunk,
} from "../raft/types.ts";
import { DecodeError, ProtocolError } from "./errors.ts";
import { connDuplex, installConnectHook, SocketGroup } from "./grpc_sockets.ts";
import { AcceptLoop } from "./listener.ts";
import { RAFT_PROTO_JSON } from "./raft_proto.ts";
import { encodedMessageSize } from "./message_codec.ts";
import {
  formatAddress,
  isLocalMessage,
  parseAddress,
  type PeerTransport,
  type ResolvedOptions,
  resolveOptions,
  type TransportOptions,
} from "./options.ts";
import { SendQueue } from "./send_queue.ts";

/** How proto-loader maps protobuf to JS: camelCase fields, numbers for 64-bit ints and enums. */
export const PROTO_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: Number,
  defaults: true,
  oneofs: false,
};

/** Concurrent calls one inbound connection may carry (a peer uses one unary call and at most one
 * snapshot stream at a time): bounds what a connection holds in partly received messages. */
export const MAX_STREAMS = 4;

/** Where the service definition lives (the embedded {@link RAFT_PROTO_JSON} mirrors it). */
export const RAFT_PROTO_PATH: string = fileURLToPath(new URL("./raft.proto", import.meta.url));

// deno-lint-ignore no-explicit-any
type Any = any;

/** grpc-js and the Raft service, loaded on first use (grpc-js takes ~250 ms to load). */
interface GrpcRuntime {
  /** The grpc-js module. */
  grpc: typeof grpc;
  /** The generated Raft client constructor (with `.service` for servers). */
  Raft: Any;
}

let runtime: Promise<GrpcRuntime> | null = null;

/** Loads grpc-js, proto-loader and the Raft service definition once. */
export function loadGrpcRuntime(): Promise<GrpcRuntime> {
  return runtime ??= (async () => {
    installConnectHook();
    const [g, protoLoader] = await Promise.all([
      import("@grpc/grpc-js"),
      import("@grpc/proto-loader"),
    ]);
    const def = protoLoader.fromJSON(RAFT_PROTO_JSON as Any, PROTO_OPTIONS);
    return { grpc: g, Raft: (g.loadPackageDefinition(def) as Any).gokv.raft.v1.Raft };
  })();
}

/**
 * The largest protobuf message accepted: a message of up to `maxFrameBytes` in our binary
 * encoding can take more room in protobuf (varints, tags, nested lengths), so allow twice that.
 */
function grpcMessageLimit(maxFrameBytes: number): number {
  return Math.min(2 * maxFrameBytes + 64 * 1024, 0x7fff_ffff);
}

function channelOptions(o: ResolvedOptions): grpc.ChannelOptions {
  return {
    "grpc.max_receive_message_length": grpcMessageLimit(o.maxFrameBytes),
    "grpc.max_send_message_length": grpcMessageLimit(o.maxFrameBytes),
    "grpc.initial_reconnect_backoff_ms": o.reconnectMinMs,
    "grpc.min_reconnect_backoff_ms": o.reconnectMinMs,
    "grpc.max_reconnect_backoff_ms": o.reconnectMaxMs,
    "grpc.enable_retries": 0,
    // One subchannel per peer channel, so that its sockets are this peer's alone.
    "grpc.use_local_subchannel_pool": 1,
    // Never let grpc-js close an idle channel gracefully (GOAWAY, see grpc_sockets.ts).
    "grpc.client_idle_timeout_ms": 2 ** 31 - 1,
  };
}

// ---- conversion of decoded protobuf objects, validating every field ----

const MAX_MESSAGE_TYPE = MessageType.CheckQuorum;

function int(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new DecodeError("bad-integer", `${what}: ${String(v)}`, 0);
  }
  return v;
}

function bytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new DecodeError("bad-length", `${what} is not bytes`, 0);
  return new Uint8Array(v); // a plain copy, detached from grpc's buffers
}

function ids(v: unknown, what: string): NodeId[] {
  if (!Array.isArray(v)) throw new DecodeError("bad-count", `${what} is not a list`, 0);
  return v.map((x) => int(x, what));
}

/** Converts and validates a decoded protobuf Message; throws {@link DecodeError}. */
export function messageFromProto(p: Any): Message {
  if (p === null || typeof p !== "object") throw new DecodeError("truncated", "no message", 0);
  const type = int(p.type, "type");
  if (type > MAX_MESSAGE_TYPE) throw new DecodeError("bad-enum", `message type ${type}`, 0);
  if (!Array.isArray(p.entries)) throw new DecodeError("bad-count", "entries", 0);
  const entries: Entry[] = p.entries.map((e: Any): Entry => {
    const t = int(e?.type, "entry type");
    if (t > EntryType.ConfChange) throw new DecodeError("bad-enum", `entry type ${t}`, 0);
    return {
      term: int(e.term, "entry term"),
      index: int(e.index, "entry index"),
      type: t,
      data: bytes(e.data, "entry data"),
    };
  });
  let snapshot: SnapshotChunk | null = null;
  if (p.snapshot !== null && p.snapshot !== undefined) {
    const s = p.snapshot;
    const meta = s.meta;
    if (meta === null || typeof meta !== "object" || meta.conf === null) {
      throw new DecodeError("bad-snapshot", "snapshot without meta", 0);
    }
    const conf: ConfState = {
      voters: ids(meta.conf.voters, "voters"),
      votersOutgoing: ids(meta.conf.votersOutgoing, "votersOutgoing"),
      learners: ids(meta.conf.learners, "learners"),
      learnersNext: ids(meta.conf.learnersNext, "learnersNext"),
    };
    const data = bytes(s.data, "snapshot data");
    const offset = int(s.offset, "snapshot offset");
    const total = int(s.total, "snapshot total");
    if (offset + data.length > total) {
      throw new DecodeError("bad-snapshot", "offset + data length exceeds total", 0);
    }
    snapshot = {
      meta: {
        index: int(meta.index, "snapshot index"),
        term: int(meta.term, "snapshot term"),
        conf,
      },
      offset,
      total,
      data,
      done: s.done === true,
    };
    // Absent (a sender that predates it) or empty: none.
    const mcs = meta.memberContexts ?? [];
    if (!Array.isArray(mcs)) throw new DecodeError("bad-count", "memberContexts", 0);
    if (mcs.length > 0) {
      snapshot.meta.memberContexts = mcs.map((c: Any) => ({
        id: int(c?.id, "member context id"),
        context: bytes(c.context, "member context"),
      }));
    }
  }
  return {
    type,
    to: int(p.to, "to"),
    from: int(p.from, "from"),
    term: int(p.term, "term"),
    logTerm: int(p.logTerm, "logTerm"),
    index: int(p.index, "index"),
    entries,
    commit: int(p.commit, "commit"),
    reject: p.reject === true,
    rejectHint: int(p.rejectHint, "rejectHint"),
    context: bytes(p.context, "context"),
    snapshot,
  };
}

/** The gRPC {@link PeerTransport}. */
export class GrpcTransport implements PeerTransport {
  /** Always "grpc". */
  readonly kind = "grpc";
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  readonly #peers = new PeerTable<GrpcPeer>();
  readonly #tasks = new Set<Promise<void>>();
  #server: grpc.Server | null = null;
  #acceptLoop: AcceptLoop | null = null;
  #rt: GrpcRuntime | null = null;
  readonly #accepted = new SocketGroup();
  #handler: MessageHandler | null = null;
  #address = "";
  #closed = false;
  /** Counters: messages dropped, calls refused and connections closed for bad input. */
  readonly stats = { dropped: 0, rejectedCalls: 0, rejectedConnections: 0 };

  /** Creates a transport; nothing is bound or dialed until used. */
  constructor(opts: TransportOptions) {
    this.#log = opts.logger ?? nullLogger;
    this.#o = resolveOptions(opts, this.#log);
    const sec = this.#o.security;
    if (sec.secret !== undefined) {
      // Refuse rather than run unauthenticated: the secret's handshake is the tcp transport's.
      throw new TypeError(
        "the grpc transport does not support the cluster secret; use transport: tcp, or TLS",
      );
    }
    for (const [id, a] of this.#o.peers) this.addPeer(id, a);
  }

  /** The bound address (after `start`). */
  get address(): string {
    return this.#address;
  }

  /** Binds the gRPC server. */
  async start(handler: MessageHandler): Promise<void> {
    if (this.#closed) throw new Error("transport closed");
    if (this.#server !== null) throw new Error("transport already started");
    const { hostname, port } = parseAddress(this.#o.listen);
    const rt = await loadGrpcRuntime();
    if (this.#closed) throw new Error("transport closed");
    this.#rt = rt;
    const server = new rt.grpc.Server({
      "grpc.max_receive_message_length": grpcMessageLimit(this.#o.maxFrameBytes),
      "grpc.max_send_message_length": grpcMessageLimit(this.#o.maxFrameBytes),
      "grpc.max_concurrent_streams": MAX_STREAMS,
    });
    server.addService(rt.Raft.service, {
      Send: (call: grpc.ServerUnaryCall<Any, Any>, cb: grpc.sendUnaryData<Any>) =>
        this.#onSend(call, cb),
      SendSnapshot: (call: grpc.ServerReadableStream<Any, Any>, cb: grpc.sendUnaryData<Any>) =>
        this.#onSnapshot(call, cb),
    });
    this.#server = server;
    this.#handler = handler;
    const listener = Deno.listen({ hostname, port, transport: "tcp" }); // may throw
    const injector = server.createConnectionInjector(
      this.#tls
        ? rt.grpc.ServerCredentials.createSsl(
          Buffer.from(this.#tls.ca),
          [{ private_key: Buffer.from(this.#tls.key), cert_chain: Buffer.from(this.#tls.cert) }],
          true, // mutual: a dialer without a certificate signed by ca fails the handshake
        )
        : rt.grpc.ServerCredentials.createInsecure(),
    );
    const onSessionError = (e: Error) => {
      if (this.#closed) return;
      this.stats.rejectedConnections++;
      this.#log.warn("transport: closing grpc connection on bad input", {
        error: e.name,
        reason: "http2",
        detail: e.message,
      });
    };
    if (!this.#accepted.watchServer(server, onSessionError)) {
      this.#log.warn("transport: cannot watch grpc server sockets; shutdown will send GOAWAY");
    }
    const stallMs = this.#o.stallTimeoutMs;
    this.#acceptLoop = new AcceptLoop(listener, {
      name: "peer",
      maxConnections: this.#o.maxConnections,
      logger: this.#log,
    }, (conn, release) => {
      if (this.#closed) {
        conn.close();
        release();
        return;
      }
      const remote = conn.remoteAddr;
      const d = connDuplex(
        conn,
        stallMs,
        () =>
          this.#log.debug("transport: closing idle grpc connection", {
            remote: `${remote.hostname}:${remote.port}`,
            idleMs: stallMs,
          }),
      );
      d.once("close", release);
      d.on("error", () => {}); // the session reports it; a reset is a plain close here
      injector.injectConnection(d);
    });
    this.track(this.#acceptLoop.done);
    const bound = (listener.addr as Deno.NetAddr).port;
    this.#address = formatAddress(hostname, bound);
    this.#log.info("transport: grpc listening", { id: this.#o.id, address: this.#address });
  }

  /** Queues messages; never throws, never blocks. */
  send(msgs: Message[]): void {
    if (this.#closed) return;
    for (const m of msgs) {
      if (isLocalMessage(m.type)) continue;
      const peer = this.#peers.get(m.to);
      if (peer === undefined) {
        this.stats.dropped++;
        continue;
      }
      let size: number;
      try {
        size = encodedMessageSize(m);
      } catch (e) {
        this.stats.dropped++;
        this.#log.warn("transport: message not encodable, dropped", { to: m.to, error: String(e) });
        continue;
      }
      if (size > this.#o.maxFrameBytes) {
        this.stats.dropped++;
        this.#log.warn("transport: message too large, dropped", { to: m.to, size });
        continue;
      }
      peer.enqueue(m, size);
    }
  }

  /** Adds `id` or changes its address. */
  addPeer(id: NodeId, address: string): void {
    if (this.#closed || id === this.#o.id || id === NONE) return;
    this.#peers.upsert(id, address, () => new GrpcPeer(this, id, address));
  }

  /** Forgets `id` and closes its channel. */
  removePeer(id: NodeId): void {
    this.#peers.remove(id);
  }

  /** Why inbound peers cannot connect now (undefined when they can). */
  get problem(): string | undefined {
    return this.#closed ? undefined : this.#acceptLoop?.problem;
  }

  /** Shuts the server down, closes every channel and waits for the peer loops. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    void this.#acceptLoop?.close();
    // Drop connections without GOAWAY first (Deno 2.9.6 nghttp2 crash, see grpc_sockets.ts).
    this.#accepted.destroyAll();
    this.#peers.closeAll();
    this.#server?.forceShutdown();
    this.#handler = null;
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  // ---- internals shared with GrpcPeer ----

  /** @internal */
  get options(): ResolvedOptions {
    return this.#o;
  }

  /** @internal */
  get logger(): Logger {
    return this.#log;
  }

  /** @internal */
  track(p: Promise<void>): void {
    const t = p.catch((e) => this.#log.error("transport: task failed", { error: String(e) }))
      .finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }

  /** @internal */
  reportUnreachable(peer: NodeId): void {
    if (!this.#o.reportUnreachable || this.#closed || this.#handler === null) return;
    this.#deliver(message({ type: MessageType.Unreachable, to: this.#o.id, from: peer }));
  }

  #deliver(m: Message): void {
    try {
      this.#handler?.(m);
    } catch (e) {
      this.#log.error("transport: message handler threw", { type: m.type, error: String(e) });
    }
  }

  /** Converts and checks one incoming message; throws DecodeError/ProtocolError. */
  /** The peer's TLS material (mutual TLS on every call), or undefined. */
  get #tls(): PeerTlsMaterial | undefined {
    return this.#o.security.tls;
  }

  #accept(p: Any, snap: boolean, call: Any): Message {
    const m = messageFromProto(p);
    if (this.#tls !== undefined) {
      // The verified client certificate must name the node the message claims to come from.
      const cn = call.getAuthContext?.()?.sslPeerCertificate?.subject?.CN;
      if (cn !== `node-${m.from}`) {
        throw new ProtocolError(
          "wrong-identity",
          `message from ${m.from} over a connection whose certificate names ${cn ?? "nobody"}`,
        );
      }
    }
    if (m.to !== this.#o.id) {
      throw new ProtocolError("wrong-node", `message to ${m.to}, this is ${this.#o.id}`);
    }
    if (isLocalMessage(m.type)) {
      throw new ProtocolError("local-message", `message type ${m.type} is local`);
    }
    if (snap !== (m.type === MessageType.Snap)) {
      throw new ProtocolError("local-message", `message type ${m.type} on the wrong RPC`);
    }
    return m;
  }

  #refuse(call: { getPeer(): string }, e: unknown): grpc.ServiceError {
    this.stats.rejectedCalls++;
    const err = e as Error & { reason?: string };
    this.#log.warn("transport: refusing grpc call on bad input", {
      remote: call.getPeer(),
      error: err.name,
      reason: err.reason,
      detail: err.message,
    });
    return Object.assign(new Error(err.message), {
      code: this.#rt!.grpc.status.INVALID_ARGUMENT,
      details: err.message,
      metadata: new this.#rt!.grpc.Metadata(),
    });
  }

  #onSend(call: grpc.ServerUnaryCall<Any, Any>, cb: grpc.sendUnaryData<Any>): void {
    const list = call.request?.messages;
    try {
      if (!Array.isArray(list)) throw new DecodeError("bad-count", "batch without messages", 0);
      const msgs = list.map((p: Any) => this.#accept(p, false, call));
      for (const m of msgs) {
        if (this.#closed) break;
        this.#deliver(m);
      }
      cb(null, {});
    } catch (e) {
      cb(this.#refuse(call, e), null);
    }
  }

  #onSnapshot(call: grpc.ServerReadableStream<Any, Any>, cb: grpc.sendUnaryData<Any>): void {
    let failed = false;
    call.on("data", (p: Any) => {
      if (failed) return;
      try {
        const m = this.#accept(p, true, call);
        if (!this.#closed) this.#deliver(m);
      } catch (e) {
        failed = true;
        cb(this.#refuse(call, e), null);
      }
    });
    call.on("end", () => {
      if (!failed) cb(null, {});
    });
    call.on("error", () => {
      failed = true;
    });
  }
}

/** One outbound peer: a bounded queue of messages and the loop that sends them. */
class GrpcPeer {
  readonly #t: GrpcTransport;
  readonly #queue: SendQueue<Message>;
  #client: Any = null;
  #rt: GrpcRuntime | null = null;
  readonly #sockets = new SocketGroup();
  #running = false;
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(t: GrpcTransport, readonly id: NodeId, readonly address: string) {
    this.#t = t;
    this.#queue = new SendQueue(t.options.queueMessages, t.options.queueBytes);
  }

  enqueue(m: Message, size: number): void {
    if (this.#closed) return;
    if (!this.#queue.push(m, size)) {
      this.#t.stats.dropped++;
      return;
    }
    if (!this.#running) {
      this.#running = true;
      this.#t.track(this.#run());
    } else {
      const w = this.#wake;
      this.#wake = null;
      w?.();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    const w = this.#wake;
    this.#wake = null;
    w?.();
    // Close the connection under the channel first: no GOAWAY (see grpc_sockets.ts).
    this.#sockets.destroyAll();
    this.#client?.close();
  }

  #clientFor(): Any {
    if (this.#client === null) {
      const rt = this.#rt!;
      const { hostname, port } = parseAddress(this.address);
      const tls = this.#t.options.security.tls;
      const name = `node-${this.id}`;
      this.#client = new rt.Raft(
        formatAddress(hostname, port),
        tls
          ? rt.grpc.credentials.createSsl(
            Buffer.from(tls.ca),
            Buffer.from(tls.key),
            Buffer.from(tls.cert),
            {
              // The server's certificate must be node <id>'s (signed by ca), whatever address
              // it is reached at.
              checkServerIdentity: (
                _host: string,
                cert: { subject?: { CN?: string | string[] } },
              ) =>
                cert.subject?.CN === name
                  ? undefined
                  : new Error(`peer certificate names ${cert.subject?.CN}, not ${name}`),
            },
          )
          : rt.grpc.credentials.createInsecure(),
        tls
          ? { ...channelOptions(this.#t.options), "grpc.ssl_target_name_override": name }
          : channelOptions(this.#t.options),
      );
    }
    return this.#client;
  }

  #failed(what: string, err: grpc.ServiceError, dropped: number): void {
    this.#t.stats.dropped += dropped;
    this.#t.logger.debug("transport: grpc call failed", {
      peer: this.id,
      what,
      code: err.code,
      error: err.details ?? err.message,
      dropped,
    });
    const status = this.#rt!.grpc.status;
    if (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED) {
      this.#t.reportUnreachable(this.id);
    }
  }

  async #run(): Promise<void> {
    this.#rt = await loadGrpcRuntime();
    while (!this.#closed) {
      const head = this.#queue.peek();
      if (head === undefined) {
        await new Promise<void>((r) => this.#wake = r);
        continue;
      }
      if (head.type === MessageType.Snap) await this.#streamSnapshot();
      else await this.#sendBatch();
    }
  }

  async #sendBatch(): Promise<void> {
    const o = this.#t.options;
    const limit = Math.min(o.maxFrameBytes, 4 * 1024 * 1024);
    const batch: Message[] = [];
    let bytes = 0;
    for (;;) {
      const m = this.#queue.peek();
      if (m === undefined || m.type === MessageType.Snap) break;
      const size = this.#queue.peekSize();
      if (batch.length > 0 && bytes + size > limit) break;
      batch.push(this.#queue.shift()!);
      bytes += size;
    }
    const client = this.#clientFor();
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      this.#sockets.run(() =>
        client.Send(
          { messages: batch },
          { deadline: Date.now() + o.callTimeoutMs },
          (e: grpc.ServiceError | null) => resolve(e),
        )
      )
    );
    if (err !== null && !this.#closed) this.#failed("Send", err, batch.length);
  }

  async #streamSnapshot(): Promise<void> {
    const client = this.#clientFor();
    let settled = false;
    let sent = 0;
    const result = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = this.#sockets.run(() =>
        client.SendSnapshot((e: grpc.ServiceError | null) => {
          settled = true;
          resolve(e);
        })
      );
      this.#pump(call, () => settled, () => sent++).finally(() => call.end());
    });
    const err = await result;
    if (err !== null && !this.#closed) this.#failed("SendSnapshot", err, sent);
  }

  /** Writes queued Snap chunks to `call` while they keep coming, honouring flow control. */
  async #pump(call: Any, settled: () => boolean, count: () => void): Promise<void> {
    for (;;) {
      if (this.#closed || settled()) return;
      const m = this.#queue.peek();
      if (m === undefined) {
        // Keep the stream open briefly for the chunks that follow (flow-controlled senders).
        const more = await this.#waitFor(50);
        if (!more) return;
        continue;
      }
      if (m.type !== MessageType.Snap) return;
      this.#queue.shift();
      count();
      const last = m.snapshot?.done === true;
      if (!call.write(m) && !last) {
        await new Promise<void>((r) => {
          const done = () => {
            call.off("drain", done);
            clearInterval(poll);
            r();
          };
          call.on("drain", done);
          const poll = setInterval(() => {
            if (this.#closed || settled()) done();
          }, 20);
        });
      }
      if (last) return;
    }
  }

  /** Waits up to `ms` for a message to be queued; true if one was. */
  #waitFor(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve(false);
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve(!this.#closed);
      };
    });
  }
}
