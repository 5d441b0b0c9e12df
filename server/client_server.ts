/**
 * The binary client protocol front-end (client/protocol.ts) on the node's `client` address.
 * Each connection runs a read loop that decodes frames and dispatches every request at once
 * (many in flight); responses are written as they complete, coalesced per tick. Malformed bytes
 * close that connection with a logged reason and never affect others.
 *
 * @module
 */
import type { Logger } from "../raft/logger.ts";
import {
  Consistency,
  decodeRequest,
  encodeResponseTo,
  FrameReader,
  FrameWriter,
  Op,
  ProtocolError,
  type Request,
  type Response,
  Status,
} from "../client/protocol.ts";
import {
  InvalidArgumentError,
  MutationTypeError,
  NotFoundError,
  NotLeaderError,
  PermissionDeniedError,
  SessionExpiredError,
  TimeoutError,
  UnauthenticatedError,
  UnavailableError,
  WatchCompactedError,
} from "../client/errors.ts";
import { AuthGate, type AuthOp, authorize, type KeyScope, type Principal } from "./auth.ts";
import { atomicScope, type KvService, watchScope } from "./service.ts";
import { LimitError, type NodeLimits } from "../config/limits.ts";
import { AcceptLoop, ByteBudget } from "../transport/listener.ts";
import { listenStream, type PeerConn, type ServerTlsMaterial } from "../transport/peer_conn.ts";
import type { ServerMetrics } from "./server_metrics.ts";
import type { HistogramSeries } from "./metrics.ts";
import { progressWithin } from "./watch_stream.ts";
import { parseAddress } from "../client/connection.ts";
import { parseVersionstamp } from "../storage/kv_model.ts";

/** Maps a service error to a response status and message. */
export function errorResponse(op: Op, id: number, e: unknown): Response {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof NotLeaderError) {
    return {
      op,
      id,
      status: Status.NotLeader,
      leaderId: e.leaderId,
      leaderAddr: e.leaderAddr,
      message,
    };
  }
  if (e instanceof LimitError) {
    return { op, id, status: Status.LimitExceeded, limit: e.limit, max: e.max, message };
  }
  if (e instanceof WatchCompactedError) {
    return {
      op,
      id,
      status: Status.WatchCompacted,
      position: parseVersionstamp(e.oldest),
      message,
    };
  }
  let status = Status.Internal;
  if (e instanceof NotFoundError) status = Status.NotFound;
  else if (e instanceof TimeoutError) status = Status.Timeout;
  else if (e instanceof UnavailableError) status = Status.Unavailable;
  else if (e instanceof InvalidArgumentError) status = Status.InvalidArgument;
  else if (e instanceof SessionExpiredError) status = Status.SessionExpired;
  else if (e instanceof UnauthenticatedError) status = Status.Unauthenticated;
  else if (e instanceof PermissionDeniedError) status = Status.PermissionDenied;
  else if (e instanceof MutationTypeError) status = Status.MutationType;
  return { op, id, status, message };
}

/** What a request asks for, for {@link authorize}. */
function authOf(req: Request): [AuthOp, KeyScope?] {
  switch (req.op) {
    case Op.Put:
      return ["put", req.key];
    case Op.Delete:
      return ["delete", req.key];
    case Op.Get:
      return ["get", req.key];
    case Op.Scan:
      return ["scan", req.range];
    case Op.Members:
      return ["members"];
    case Op.MemberAdd:
    case Op.MemberRemove:
      return ["member_change"];
    case Op.Transfer:
      return ["transfer"];
    case Op.Status:
      return ["status"];
    case Op.RegisterSession:
      return ["session"];
    case Op.Auth:
      return ["status"];
    case Op.Atomic:
      return ["txn", atomicScope(req)];
    case Op.GetMany:
      return ["get", req.keys];
    case Op.Range:
      return ["scan", req.range];
    case Op.Watch:
      return ["watch", watchScope(req)];
  }
}

/** Serves one decoded request for `principal` (undefined: no valid token on the connection). */
export async function handleRequest(
  service: KvService,
  req: Request,
  principal: Principal | undefined,
): Promise<Response> {
  const { op, id } = req;
  try {
    const [aop, scope] = authOf(req);
    authorize(principal, aop, scope);
    switch (req.op) {
      case Op.Put:
        await service.put(req.key, req.value, { clientId: req.clientId, seq: req.seq });
        return { op, id, status: Status.Ok };
      case Op.Delete:
        await service.delete(req.key, { clientId: req.clientId, seq: req.seq });
        return { op, id, status: Status.Ok };
      case Op.Get: {
        const v = await service.get(req.key, req.consistency === Consistency.Linearizable);
        return v === undefined
          ? { op, id, status: Status.NotFound, message: "key not found" }
          : { op, id, status: Status.Ok, value: v };
      }
      case Op.Scan: {
        const page = await service.scan(req.range, req.consistency === Consistency.Linearizable);
        return { op, id, status: Status.Ok, pairs: page.pairs, next: page.next };
      }
      case Op.Members:
        return { op, id, status: Status.Ok, members: service.members() };
      case Op.MemberAdd:
        await service.addMember(req.member);
        return { op, id, status: Status.Ok };
      case Op.MemberRemove:
        await service.removeMember(req.nodeId);
        return { op, id, status: Status.Ok };
      case Op.Transfer:
        await service.transferLeader(req.nodeId);
        return { op, id, status: Status.Ok };
      case Op.Status:
        return { op, id, status: Status.Ok, json: JSON.stringify(service.status()) };
      case Op.RegisterSession:
        return { op, id, status: Status.Ok, sessionId: await service.registerSession() };
      case Op.Auth:
        // Answered by the connection (ServerConn.authenticate) before anything else runs.
        return { op, id, status: Status.Ok };
      case Op.Atomic: {
        const r = await service.atomic(
          { checks: req.checks, mutations: req.mutations },
          { session: { clientId: req.clientId, seq: req.seq } },
        );
        return r.ok
          ? { op, id, status: Status.Ok, versionstamp: r.versionstamp }
          : { op, id, status: Status.Ok, failedChecks: r.failedChecks };
      }
      case Op.GetMany: {
        const r = await service.getMany(req.keys, {
          consistency: consistencyName(req.consistency),
        });
        return { op, id, status: Status.Ok, entries: r.entries, consistency: req.consistency };
      }
      case Op.Watch: {
        const r = await service.watchPoll(
          { keys: req.keys, prefixes: req.prefixes },
          { after: req.after, waitMs: req.waitMs },
        );
        return {
          op,
          id,
          status: Status.Ok,
          initial: r.initial,
          events: r.events,
          position: r.position,
        };
      }
      case Op.Range: {
        const r = await service.range({
          ...req.range,
          consistency: consistencyName(req.consistency),
        });
        return {
          op,
          id,
          status: Status.Ok,
          entries: r.entries,
          next: r.cursor,
          consistency: req.consistency,
        };
      }
    }
  } catch (e) {
    return errorResponse(op, id, e);
  }
}

function consistencyName(c: Consistency): "strong" | "eventual" {
  return c === Consistency.Linearizable ? "strong" : "eventual";
}

/** Options of {@link ClientServer}. */
export interface ClientServerOptions {
  /** "host:port" to bind. */
  listen: string;
  /** Where to log. */
  logger: Logger;
  /** Metrics to update. */
  metrics: ServerMetrics;
  /** Connection cap, timeouts and byte budget (default: the service's limits). */
  limits?: NodeLimits;
  /** TLS on the port (default: plaintext). */
  tls?: ServerTlsMaterial;
  /** Tokens (default: none, every request allowed). */
  auth?: AuthGate;
}

const OP_NAMES: Record<Op, string> = {
  [Op.Put]: "put",
  [Op.Get]: "get",
  [Op.Delete]: "delete",
  [Op.Scan]: "scan",
  [Op.Members]: "members",
  [Op.MemberAdd]: "member_add",
  [Op.MemberRemove]: "member_remove",
  [Op.Transfer]: "transfer",
  [Op.Status]: "status",
  [Op.RegisterSession]: "register_session",
  [Op.Auth]: "auth",
  [Op.Atomic]: "atomic",
  [Op.GetMany]: "get_many",
  [Op.Range]: "range",
  [Op.Watch]: "watch",
};

const STATUS_NAMES: Record<Status, string> = {
  [Status.Ok]: "ok",
  [Status.NotFound]: "not_found",
  [Status.NotLeader]: "not_leader",
  [Status.Timeout]: "timeout",
  [Status.Unavailable]: "unavailable",
  [Status.InvalidArgument]: "invalid_argument",
  [Status.Internal]: "internal",
  [Status.LimitExceeded]: "limit_exceeded",
  [Status.SessionExpired]: "session_expired",
  [Status.Unauthenticated]: "unauthenticated",
  [Status.PermissionDenied]: "permission_denied",
  [Status.MutationType]: "mutation_type",
  [Status.WatchCompacted]: "watch_compacted",
};

/** Requests one connection may have pending before the server stops reading from it. */
export const MAX_INFLIGHT_PER_CONN = 8192;

/** Bytes read from a client socket at a time. */
const READ_BYTES = 16 * 1024;
/** A connection's frame buffer up to this size is not counted against the budget. */
const FREE_BUFFER_BYTES = 64 * 1024;
const counted = (capacity: number) => capacity > FREE_BUFFER_BYTES ? capacity : 0;

class ServerConn {
  /** Responses not yet written, encoded in place (one buffer, no frame of their own). */
  private out = new FrameWriter(4096);
  private writing = false;
  private closed = false;
  private writeDone: Promise<void> = Promise.resolve();
  inflight = 0;
  /** Bytes of decoded requests still being served. */
  private inflightBytes = 0;
  /** Bytes taken from the listener's budget. */
  private held = 0;
  /** The frame buffer's share at the last {@link reconcile}. */
  private lastBuffered = 0;
  private resume: (() => void) | undefined;
  /** Bytes of the buffer being written that the socket has not taken yet. */
  private unwritten = 0;
  /** Wakes {@link drained} when the socket takes bytes. */
  private wrote: (() => void) | undefined;
  /** Who this connection authenticated as (undefined: no valid token yet). */
  private principal: Principal | undefined;
  /** The request latency series by op, bound on first use (no label hashing per request). */
  private readonly latency: HistogramSeries[] = [];

  constructor(
    readonly conn: PeerConn,
    private readonly service: KvService,
    private readonly o: ClientServerOptions,
    private readonly limits: NodeLimits,
    private readonly budget: ByteBudget,
    private readonly onClose: (c: ServerConn) => void,
    private readonly auth: AuthGate,
  ) {
    this.principal = auth.enabled ? undefined : auth.authenticate(undefined);
  }

  /** The Auth handshake: answered at once, in order, so that the requests after it on the
   * connection run as its principal. */
  private authenticate(req: Request & { op: Op.Auth }): void {
    let res: Response;
    try {
      const p = this.auth.authenticate(req.token);
      authorize(p, "status");
      this.principal = p;
      res = {
        op: req.op,
        id: req.id,
        status: Status.Ok,
        authName: p!.name,
        authRole: p!.role,
      };
    } catch (e) {
      this.principal = this.auth.enabled ? undefined : this.principal;
      this.o.metrics.requestErrors.inc({ op: "auth", status: "unauthenticated" });
      res = errorResponse(req.op, req.id, e);
    }
    this.send(res);
  }

  /** Takes or gives back budget so that it covers the bytes this connection holds. */
  private reconcile(buffered: number): boolean {
    this.lastBuffered = buffered;
    const need = buffered + this.inflightBytes;
    if (need < this.held) {
      this.budget.release(this.held - need);
      this.held = need;
      return true;
    }
    if (need === this.held) return true;
    if (!this.budget.tryTake(need - this.held)) return false;
    this.held = need;
    return true;
  }

  /** Reads once, within the deadline that applies now; null at end of stream. */
  private async readTimed(buf: Uint8Array, ms: number, why: string): Promise<number | null> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.close();
    }, ms);
    try {
      return await this.conn.read(buf);
    } catch (e) {
      if (timedOut) throw new StalledError(why, ms);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async serve(): Promise<void> {
    const frames = new FrameReader();
    const buf = new Uint8Array(READ_BYTES);
    const peer = this.conn.remote;
    let received = 0;
    try {
      while (!this.closed) {
        // The deadline of this read: a new connection must send its first byte, and a started
        // frame must progress, within the request timeout; otherwise the idle timeout.
        const stalled = received === 0 || frames.buffered > 0;
        const n = await this.readTimed(
          buf,
          stalled ? this.limits.requestTimeoutMs : this.limits.idleTimeoutMs,
          received === 0 ? "no first byte" : stalled ? "frame stalled" : "idle",
        );
        if (n === null) break;
        received += n;
        const chunk = buf.subarray(0, n);
        // Memory bound: what this connection holds (its frame buffer beyond 64 KiB, requests
        // being served) comes out of the listener's budget, reserved BEFORE the buffer grows;
        // without budget, stop reading until some is freed, and drop the connection if that
        // takes longer than the request timeout.
        const deadline = Date.now() + this.limits.requestTimeoutMs;
        while (!this.closed && !this.reconcile(counted(frames.capacityAfter(chunk)))) {
          if (Date.now() >= deadline) {
            throw new StalledError("no buffer budget", this.limits.requestTimeoutMs);
          }
          await this.budget.wait(Math.max(1, deadline - Date.now()));
        }
        frames.push(chunk);
        for (let body = frames.next(); body; body = frames.next()) {
          // Backpressure on responses: a client that leaves `send_buffer_bytes` of them unread
          // gets no more requests served (those already dispatched still answer).
          if (this.unsent >= this.limits.sendBufferBytes) await this.drained();
          if (this.closed) break;
          const req = decodeRequest(body);
          if (req.op === Op.Auth) this.authenticate(req);
          else this.dispatch(req, body.length);
        }
        frames.shrink();
        this.reconcile(counted(frames.capacity));
        // Backpressure: stop reading while too many requests of this connection are pending.
        if (this.inflight >= MAX_INFLIGHT_PER_CONN) {
          await new Promise<void>((r) => this.resume = r);
        }
      }
    } catch (e) {
      if (e instanceof StalledError) {
        this.o.logger.info("closing client connection", { peer, reason: e.message });
      } else if (e instanceof ProtocolError) {
        this.o.metrics.protocolErrors.inc();
        this.o.logger.warn("closing client connection: malformed request", {
          peer,
          reason: e.reason,
        });
      } else if (!this.closed && !(e instanceof Deno.errors.BadResource)) {
        this.o.logger.debug("client connection read failed", { peer, error: (e as Error).message });
      }
    }
    // Let requests already dispatched finish and be written before closing (graceful).
    while (this.inflight > 0 && !this.closed) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await this.writeDone;
    this.close();
  }

  /** Response bytes not yet taken by the socket. */
  private get unsent(): number {
    return this.out.length + this.unwritten;
  }

  /**
   * Waits until the unsent responses are below `send_buffer_bytes` (the bound of what a node
   * holds for one slow reader, as for watch streams: server/watch_stream.ts); a client that
   * takes nothing for the request timeout meanwhile is disconnected (StalledError).
   */
  private async drained(): Promise<void> {
    const ms = this.limits.requestTimeoutMs;
    while (!this.closed && this.unsent >= this.limits.sendBufferBytes) {
      const progressed = await progressWithin(ms, (w) => this.wrote = w);
      if (!progressed && !this.closed) {
        this.close();
        throw new StalledError("not reading its responses", ms);
      }
    }
  }

  private dispatch(req: Request, bytes: number): void {
    this.inflight++;
    this.inflightBytes += bytes;
    const t0 = performance.now();
    const m = this.o.metrics;
    // Nothing thrown here (a handler, or a response too large to encode) may escape as an
    // unhandled rejection: it becomes an error response for that request only.
    handleRequest(this.service, req, this.principal).catch((e) => errorResponse(req.op, req.id, e))
      .then((res) => {
        this.inflightBytes -= bytes;
        if (!this.closed) this.reconcile(this.lastBuffered);
        this.done();
        (this.latency[req.op] ??= m.requestSeconds.series({ op: OP_NAMES[req.op] }))
          .observe((performance.now() - t0) / 1000);
        res = this.send(res);
        if (res.status !== Status.Ok && res.status !== Status.NotFound) {
          m.requestErrors.inc({ op: OP_NAMES[req.op], status: STATUS_NAMES[res.status] });
        }
      }).catch((e) =>
        this.o.logger.error("client request failed", { op: req.op, error: (e as Error).message })
      );
  }

  private done(): void {
    this.inflight--;
    if (this.resume && this.inflight < MAX_INFLIGHT_PER_CONN / 2) {
      const r = this.resume;
      this.resume = undefined;
      r();
    }
  }

  /** Queues `res` for writing; returns what was queued (an error response for one that cannot
   * be encoded, e.g. over the frame limit). */
  private send(res: Response): Response {
    if (this.closed) return res;
    try {
      encodeResponseTo(this.out, res);
    } catch (e) {
      res = errorResponse(res.op, res.id, e);
      encodeResponseTo(this.out, res);
    }
    if (!this.writing) {
      this.writing = true;
      this.writeDone = new Promise<void>((resolve) =>
        queueMicrotask(() => this.flush().finally(resolve))
      );
    }
    return res;
  }

  private async flush(): Promise<void> {
    try {
      while (this.out.length > 0 && !this.closed) {
        const buf = this.out.take();
        let off = 0;
        this.unwritten = buf.length;
        while (off < buf.length) {
          off += await this.conn.write(buf.subarray(off));
          this.unwritten = buf.length - off;
          this.wrote?.();
        }
        this.out.recycle(buf);
      }
    } catch {
      this.close();
    } finally {
      this.writing = false;
      this.unwritten = 0;
    }
  }

  /** Waits for pending responses to be written (bounded), then closes. */
  async shutdown(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.inflight > 0 || this.writing) && Date.now() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, 5));
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.budget.release(this.held);
    this.held = 0;
    this.resume?.();
    this.wrote?.();
    try {
      this.conn.close();
    } catch { /* already closed */ }
    this.onClose(this);
  }
}

/** A connection that sent nothing in time (or could not get buffer budget). */
class StalledError extends Error {
  constructor(why: string, ms: number) {
    super(`${why} for ${ms} ms`);
    this.name = "StalledError";
  }
}

/** Listens for client connections and serves the binary protocol. */
export class ClientServer {
  private loop: AcceptLoop<PeerConn> | undefined;
  private conns = new Set<ServerConn>();
  private readonly limits: NodeLimits;
  /** Bytes all connections hold in partial frames and requests being served. */
  readonly budget: ByteBudget;
  private readonly auth: AuthGate;

  /** Creates the server (call {@link start}). */
  constructor(private readonly service: KvService, private readonly o: ClientServerOptions) {
    this.auth = o.auth ?? AuthGate.none();
    this.limits = o.limits ?? service.limits;
    this.budget = new ByteBudget(this.limits.bufferedBytes);
  }

  /** Binds and starts accepting; returns the bound address. */
  async start(): Promise<Deno.NetAddr> {
    const { hostname, port } = parseAddress(this.o.listen);
    const listener = await listenStream(hostname, port, this.o.tls);
    this.loop = new AcceptLoop<PeerConn>(listener, {
      name: "client",
      maxConnections: this.limits.maxConnections,
      logger: this.o.logger,
    }, (conn, release) => {
      this.o.metrics.connections.inc();
      const c = new ServerConn(conn, this.service, this.o, this.limits, this.budget, (x) => {
        this.conns.delete(x);
        release();
      }, this.auth);
      this.conns.add(c);
      c.serve().catch((e) =>
        this.o.logger.warn("client connection failed", { error: (e as Error).message })
      );
    });
    return { transport: "tcp", hostname, port: listener.port };
  }

  /** The accept loop (health, counters); undefined before {@link start}. */
  get acceptLoop(): AcceptLoop<PeerConn> | undefined {
    return this.loop;
  }

  /** Open connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** Stops accepting connections (existing ones keep being served). */
  stopAccepting(): void {
    this.loop?.close();
  }

  /** Stops accepting, lets in-flight requests finish (up to `timeoutMs`), closes all. */
  async close(timeoutMs = 5_000): Promise<void> {
    await this.loop?.close();
    await Promise.all([...this.conns].map((c) => c.shutdown(timeoutMs)));
  }
}
