/**
 * A gokv node: wires the Raft node, storage and peer transport together and serves the binary
 * client protocol and the HTTP/JSON API.
 *
 * Bootstrap rule: a node whose log is empty and that is not started with `join` bootstraps the
 * cluster with every node of the config as a voter (all initial nodes do the same thing, so they
 * agree). A node started with `join` (a node added later with `member add`) never bootstraps: it
 * waits for the leader to replicate the log (or a snapshot) to it.
 *
 * @module
 */
import { join as joinPath } from "node:path";
import { type Config, ConfigError } from "../config/config.ts";
import { createLogger } from "../config/log.ts";
import type { Logger } from "../raft/logger.ts";
import type { LogStore } from "../raft/storage.ts";
import { RaftNode } from "../raft/node.ts";
import type { ConfState } from "../raft/types.ts";
import { openStorage } from "../storage/mod.ts";
import { encodeBatch } from "../storage/command.ts";
import { MAX_BATCH_COMMANDS, MAX_BATCH_ENTRY_BYTES } from "../config/limits.ts";
import { createTransport, TcpTransport } from "../transport/mod.ts";
import { exposure, InsecureBindError, memberHttp, peerSecurity, portTls } from "./node_security.ts";
import { AuthGate, authorize, TokensFileError } from "./auth.ts";
import { parseAddress } from "../config/config.ts";
import { Counter } from "./metrics.ts";
import { ClientServer } from "./client_server.ts";
import { createHttpHandler } from "./http.ts";
import { HttpListener } from "./http_listener.ts";
import { ByteBudget } from "../transport/listener.ts";
import { AddressBook, MemberPeers } from "./members.ts";
import {
  countingStateMachine,
  countingTransport,
  createServerMetrics,
  type NodeMetrics,
  timedLogStore,
} from "./server_metrics.ts";
import { KvService, type RaftApi, roleName } from "./service.ts";
import { WatchHub } from "./watch.ts";
import { createSnapshotHandler } from "./snapshot_backup.ts";
import { ClusterIdKeeper } from "./cluster_id.ts";
import { createKvConnectHandler, serviceStore } from "./kv_connect.ts";
import { DataPathTokens, gateAccessCheck, kvConnectSecret } from "./kv_connect_auth.ts";

/** The server's version, reported in status. */
export const SERVER_VERSION = "0.1.0";

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** The logger (default: from the config's log settings). */
  logger?: Logger;
  /** Join an existing cluster: never bootstrap, wait to be added (`gokv server --join`). */
  join?: boolean;
  /** Deadline of one client request inside the server (default 2 500 ms). */
  requestTimeoutMs?: number;
  /** Listen beyond loopback without TLS and tokens (`gokv server --insecure`); otherwise such a
   * node refuses to start with {@link InsecureBindError}. */
  insecure?: boolean;
}

/** Fault-injection hooks of {@link startServerWithHooks} (tests only; not in the public API). */
export interface ServerTestHooks {
  /** Wraps the node's Raft log store before the node uses it (e.g. a failing `sync()`). */
  wrapLogStore?: (log: LogStore) => LogStore;
  /** Receives a view of the transport's peers (id → peer address) as the node sets them. */
  peers?: (current: () => ReadonlyMap<number, string>) => void;
}

/** A running node. */
export interface ServerHandle {
  /** The node id. */
  readonly id: number;
  /** The bound client protocol address. */
  readonly clientAddress: string;
  /** The bound HTTP address. */
  readonly httpAddress: string;
  /** The node's metrics. */
  readonly metrics: NodeMetrics;
  /** The node's status (as GET /v1/status). */
  status(): Record<string, unknown>;
  /** Stops accepting requests, finishes in-flight ones, stops Raft and persists. Idempotent. */
  close(): Promise<void>;
  /**
   * Resolves with the error when the node halted on a fatal error (its storage failed, a
   * committed conf change did not apply): it serves nothing more and `/healthz` answers 503.
   * `gokv server` then exits non-zero so that a supervisor restarts it from its durable state.
   */
  readonly failed: Promise<Error>;
}

/** The id is not a node of the configuration. */
export class UnknownNodeError extends Error {
  /** Creates the error. */
  constructor(readonly id: number, readonly ids: number[]) {
    super(`node id ${id} is not in the config (nodes: ${ids.join(", ")})`);
    this.name = "UnknownNodeError";
  }
}

/**
 * A node on the memory backend was started again after it stopped: its Raft log, term and vote
 * are gone. Restarting it as if new could make it vote twice in one term and, re-bootstrapped
 * with an empty log, it would never catch up, so it refuses to start (etcd has no such backend;
 * a node that lost its data directory must be removed and re-added there too).
 */
export class MemoryNodeRestartError extends Error {
  /** Creates the error for node `id` whose directory is `dir`. */
  constructor(readonly id: number, readonly dir: string) {
    super(
      `node ${id} ran before with storage: memory and lost its Raft log, term and vote when it ` +
        `stopped; restarting it could make it vote twice in a term and it would never catch ` +
        `up. To bring it back: remove it (gokv member remove ${id}), delete ${dir}, add it again ` +
        `(gokv member add ${id} ...) and start it with --join. A whole memory cluster restarts ` +
        `as a new cluster once its data directories are deleted. Use storage: lsm to keep data.`,
    );
    this.name = "MemoryNodeRestartError";
  }
}

/** Marks `dir` as used by a memory-backend node; throws when it already was. */
function claimMemoryIncarnation(id: number, dir: string): void {
  const marker = joinPath(dir, MEMORY_MARKER);
  try {
    Deno.statSync(marker);
    throw new MemoryNodeRestartError(id, dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const f = Deno.openSync(marker, { write: true, createNew: true });
  try {
    f.writeSync(new TextEncoder().encode(
      JSON.stringify({ node: id, startedAt: new Date().toISOString(), pid: Deno.pid }) + "\n",
    ));
    f.syncSync();
  } finally {
    f.close();
  }
}

/** The file a memory-backend node leaves in its directory (see {@link MemoryNodeRestartError}). */
const MEMORY_MARKER = "memory-node-started";

function isEmptyLog(
  init: { hardState: { term: number; commit: number }; confState: ConfState },
  lastIndex: number,
  snapIndex: number,
): boolean {
  const c = init.confState;
  return init.hardState.term === 0 && init.hardState.commit === 0 && lastIndex === 0 &&
    snapIndex === 0 && c.voters.length === 0 && c.learners.length === 0;
}

/** Starts node `id` of `config`. */
export function startServer(
  config: Config,
  id: number,
  opts: ServerOptions = {},
): Promise<ServerHandle> {
  return startServerWithHooks(config, id, opts, {});
}

/** {@link startServer} with fault-injection hooks (tests). */
export async function startServerWithHooks(
  config: Config,
  id: number,
  opts: ServerOptions,
  hooks: ServerTestHooks,
): Promise<ServerHandle> {
  const node = config.nodes.find((n) => n.id === id);
  if (!node) throw new UnknownNodeError(id, config.nodes.map((n) => n.id));
  const exposed = exposure(config, id);
  if (exposed.length > 0 && !opts.insecure) throw new InsecureBindError(exposed);
  const logger = opts.logger ??
    createLogger({ level: config.log.level, format: config.log.format, nodeId: id });
  const dir = joinPath(config.dataDir, `node-${id}`);
  await Deno.mkdir(dir, { recursive: true });
  // A one-node memory cluster that restarts is simply a new cluster (nobody else remembers a
  // term or a log); a member of a larger cluster must not come back with amnesia.
  if (config.storage === "memory" && (config.nodes.length > 1 || opts.join)) {
    claimMemoryIncarnation(id, dir);
  }

  const ref: { raft?: RaftNode; service?: KvService } = {};
  let storageStats: () => Record<string, unknown> = () => ({});
  const metrics = createServerMetrics({
    raft: () => {
      const s = ref.raft?.status();
      if (!s) return { term: 0, commit: 0, applied: 0, isLeader: false, logSize: 0 };
      return {
        term: s.term,
        commit: s.commit,
        applied: s.applied,
        isLeader: s.role === "leader",
        logSize: s.logSize,
        snapshotIndex: s.snapshotIndex,
      };
    },
    storage: () => storageStats(),
    watch: () => ref.service?.watchStreams,
  });

  // The state machine's engine failing in the background (a flush or compaction: EIO, a worker
  // crash, corruption) is fatal like a failed fsync: the node halts, /healthz is 503, and
  // `gokv server` exits 1. Before the Raft node exists it is halted as soon as it is created.
  let storageFailure: Error | undefined;
  const opened = await openStorage(config.storage, dir, {
    lsm: config.lsm,
    logger,
    onBackgroundWork: (kind, seconds) => metrics.lsmBackgroundSeconds.observe({ kind }, seconds),
    onFailure: (e) => {
      logger.error("state machine storage failed", { error: e.message, kind: e.name });
      storageFailure ??= e;
      ref.raft?.fail(e);
    },
  });
  const log = timedLogStore(
    hooks.wrapLogStore ? hooks.wrapLogStore(opened.log) : opened.log,
    metrics.fsyncSeconds,
  );
  const sm = countingStateMachine(opened.sm, metrics);
  // The change history for watches attaches before the log is replayed, so it is complete after
  // the state machine's applied index.
  const watch = new WatchHub(sm, {
    maxEvents: config.limits.watchHistoryEvents,
    maxBytes: config.limits.watchHistoryBytes,
  });
  storageStats = () => opened.sm.stats();

  const book = new AddressBook(
    config.nodes.map((n) => ({ id: n.id, peer: n.peer, client: n.client, http: n.http })),
    dir,
  );
  await book.load();
  const peers = new Map<number, string>();
  for (const m of book.all()) if (m.id !== id) peers.set(m.id, m.peer);
  const peerTransport = createTransport(config.transport, {
    id,
    listen: node.listenPeer,
    peers,
    logger,
    maxConnections: config.limits.maxConnections,
    security: await peerSecurity(config, id),
    membersOnly: true,
  });
  if (peerTransport instanceof TcpTransport) {
    const st = peerTransport.stats;
    new Counter({
      name: "gokv_peer_unauthenticated_connections_total",
      help: "Peer connections refused: no or wrong credential, or not a member, by reason.",
      labelNames: ["reason"],
      registers: [metrics.registry],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(st.unauthenticated)) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: "gokv_peer_nonmember_dropped_total",
      help: "Peer connections or messages dropped because the sender is not a current member.",
      registers: [metrics.registry],
      collect() {
        this.reset();
        if (st.nonMemberDropped > 0) this.inc(st.nonMemberDropped);
      },
    });
  }
  const transport = countingTransport(peerTransport, metrics);

  const init = opened.log.initialState();
  const empty = isEmptyLog(init, opened.log.lastIndex(), opened.log.snapshotMeta().index);
  const bootstrapVoters = empty && !opts.join ? config.nodes.map((n) => n.id) : undefined;
  if (bootstrapVoters) {
    logger.info("bootstrapping a new cluster", { voters: bootstrapVoters });
  } else if (empty) {
    logger.info("empty log: waiting to be added to the cluster (--join)");
  }

  // The transport's peers follow the configuration: conf changes as they apply, and the
  // configuration a snapshot install or the restart brings (with the member contexts it
  // carries: the addresses of members added by entries this node never applied).
  const memberPeers = new MemberPeers({ self: id, transport, peers, book, logger });
  hooks.peers?.(() => memberPeers.peers);

  const r = config.raft;
  let raft: RaftNode;
  try {
    raft = await RaftNode.start({
      config: {
        id,
        electionTick: Math.max(2, Math.round(r.electionMs / r.tickMs)),
        heartbeatTick: Math.max(1, Math.round(r.heartbeatMs / r.tickMs)),
        preVote: r.preVote,
        checkQuorum: r.checkQuorum,
        maxSizePerMsg: r.maxSizePerMsg,
        maxInflightMsgs: r.maxInflightMsgs,
        maxInflightBytes: r.maxInflightBytes,
        leaseRead: r.leaseRead,
      },
      tickMs: r.tickMs,
      log,
      sm,
      transport,
      bootstrapVoters,
      snapshotThreshold: r.snapshotThreshold,
      snapshotBytes: r.snapshotBytes,
      logger,
      onConfChange: (cc, conf, index) => memberPeers.onConfChange(cc, conf, index),
      onSnapshotRestored: (meta) => memberPeers.onSnapshotRestored(meta),
      batcher: {
        encode: encodeBatch,
        maxBytes: MAX_BATCH_ENTRY_BYTES,
        maxParts: MAX_BATCH_COMMANDS,
      },
    });
  } catch (e) {
    await transport.close().catch(() => {});
    await log.close().catch(() => {});
    await sm.close().catch(() => {});
    throw e;
  }
  ref.raft = raft;
  // The core rebuilt its configuration from the snapshot and the conf changes up to the applied
  // index without callbacks: members added before may be unknown, members removed still peers.
  memberPeers.reconcile(raft.status().conf, raft.memberContexts());
  const failed = Promise.withResolvers<Error>();
  raft.onFatal((err) => {
    logger.error(
      "node halted on a fatal error: it serves nothing more; exit and restart it from its data",
      { error: err.message, kind: err.name },
    );
    failed.resolve(err);
  });
  if (storageFailure) raft.fail(storageFailure);

  let lastTerm = raft.status().term;
  let lastCommit = raft.status().commit;
  raft.onLeaderChange((lead: number) => {
    metrics.leaderChanges.inc();
    logger.info("leader changed", { leader: lead, term: raft.status().term });
  });
  const sampler = setInterval(() => {
    const st = raft.status();
    if (st.term > lastTerm) metrics.elections.inc(st.term - lastTerm);
    if (st.commit > lastCommit) metrics.commits.inc(st.commit - lastCommit);
    lastTerm = st.term;
    lastCommit = st.commit;
  }, 100);
  Deno.unrefTimer(sampler);

  const service = new KvService({
    id,
    raft: raft as unknown as RaftApi,
    sm,
    book,
    metrics,
    requestTimeoutMs: opts.requestTimeoutMs,
    limits: config.limits,
    sessionIdleTimeoutMs: config.sessions.idleTimeoutMs,
    maxSessions: config.sessions.maxSessions,
    watch,
    logger,
    statusExtra: () => ({
      version: SERVER_VERSION,
      storageKind: config.storage,
      transport: config.transport,
      peerAddr: node.peer,
      clientAddr: node.client,
      httpAddr: node.http,
      clusterId: sm.clusterId() ?? null,
    }),
  });
  ref.service = service;

  service.startExpirySweeper();
  // The cluster id (server/cluster_id.ts): proposed by the leader while the state has none.
  const clusterId = new ClusterIdKeeper(service);
  clusterId.start();

  let shuttingDown = false;
  let clientTls, httpTls, auth: AuthGate;
  try {
    clientTls = await portTls(config, id, "client");
    httpTls = await portTls(config, id, "http");
    auth = await AuthGate.open({
      tokensFile: config.security.tokensFile,
      protectMetrics: config.security.protectMetrics,
      logger,
    }).catch((e) => {
      if (!(e instanceof TokensFileError)) throw e;
      throw new ConfigError(e.file, "security.tokens_file", 0, e.message);
    });
  } catch (e) {
    await raft.stop().catch(() => {});
    throw e;
  }
  // KV Connect (`Deno.openKv("http://<node>/kv")`): the cluster id is its database id. Access
  // tokens: the configured kv_connect.access_token and the tokens file's (as their principal).
  const kvClosing = new AbortController();
  const kvConnect = createKvConnectHandler({
    store: serviceStore(service, () => clusterId.get()),
    access: gateAccessCheck(auth, config.kvConnect.accessToken),
    tokens: new DataPathTokens(
      await kvConnectSecret(config),
      config.kvConnect.tokenTtlMs,
    ),
    authorize: (subject, op, scope) => authorize(subject, op, scope),
    limits: config.limits,
    closing: kvClosing.signal,
    watchStreams: service.watchStreams,
  });
  // SIGHUP reloads the tokens file (a broken file keeps the tokens in force; it is logged).
  const onHup = () => void auth.reload().catch(() => {});
  if (auth.enabled && Deno.build.os !== "windows") Deno.addSignalListener("SIGHUP", onHup);
  const members = memberHttp(httpTls);
  const clientServer = new ClientServer(service, {
    listen: node.listenClient,
    logger,
    metrics,
    tls: clientTls,
    auth,
  });
  let clientAddr: Deno.NetAddr;
  let httpAddr: Deno.NetAddr;
  let httpServer: HttpListener | undefined;
  try {
    clientAddr = await clientServer.start();
    const snapshot = createSnapshotHandler({
      nodeId: id,
      version: SERVER_VERSION,
      isLeader: () => service.isLeader(),
      leader: () => {
        const lid = service.leaderId();
        return { id: lid, http: lid ? book.get(lid)?.http : undefined };
      },
      readIndex: () => raft.readIndex({ timeoutMs: Math.max(opts.requestTimeoutMs ?? 0, 10_000) }),
      exportState: () => opened.sm.exportState(),
      termAt: (index) => {
        try {
          return opened.log.term(index);
        } catch {
          // Compacted past `index` meanwhile: the current term (restore only needs one value
          // that every restored member shares).
          return raft.status().term;
        }
      },
      authorize: (req) => authorize(auth.authenticateHttp(req), "snapshot_backup"),
      metrics: { saves: metrics.snapshotSaves, seconds: metrics.snapshotSaveSeconds },
    });
    const handler = createHttpHandler(service, {
      metrics,
      fetch: members.fetch,
      scheme: members.scheme,
      auth,
      allowedHosts: hostNames(config),
      corsOrigins: config.http.corsOrigins,
      httpAddressOf: (nid) => book.get(nid)?.http,
      healthy: () => !shuttingDown,
      snapshot,
      kvConnect,
      // /healthz fails while a listener cannot accept (e.g. out of file descriptors), or once
      // the Raft node halted on a fatal error.
      problems: () =>
        [
          raft.failure ? `raft halted: ${raft.failure.message}` : undefined,
          clientServer.acceptLoop?.problem,
          httpServer?.problem,
          peerTransport.problem,
        ].filter((p): p is string => p !== undefined),
      budget: new ByteBudget(config.limits.bufferedBytes),
    });
    httpServer = new HttpListener({
      listen: node.listenHttp,
      handler,
      logger,
      limits: config.limits,
      tls: httpTls,
    });
    httpAddr = await httpServer.start();
  } catch (e) {
    members.close();
    clearInterval(sampler);
    await clientServer.close(0);
    await raft.stop();
    throw e;
  }
  logger.info("node started", {
    peer: node.listenPeer,
    client: `${clientAddr.hostname}:${clientAddr.port}`,
    http: `${httpAddr.hostname}:${httpAddr.port}`,
    storage: config.storage,
    transport: config.transport,
    tls: { client: clientTls !== undefined, http: httpTls !== undefined },
    dir,
  });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      shuttingDown = true;
      logger.info("shutting down: finishing in-flight requests");
      clientServer.stopAccepting();
      service.stopAccepting();
      clusterId.stop();
      kvClosing.abort(); // ends KV Connect watch streams, which never finish on their own
      const httpDone = httpServer.shutdown().catch(() => {});
      await service.drain(5_000);
      await clientServer.close(2_000);
      await httpDone;
      clearInterval(sampler);
      // RaftNode owns the transport, the log store and the state machine: stop() persists
      // and closes them.
      try {
        await raft.stop();
      } catch (e) {
        logger.warn("raft stop failed", { error: (e as Error).message });
      }
      book.save();
      members.close();
      if (auth.enabled && Deno.build.os !== "windows") Deno.removeSignalListener("SIGHUP", onHup);
      logger.info("node stopped");
    })();
    return closing;
  };

  return {
    id,
    clientAddress: `${clientAddr.hostname}:${clientAddr.port}`,
    httpAddress: `${httpAddr.hostname}:${httpAddr.port}`,
    metrics,
    status: () => service.status(),
    close,
    failed: failed.promise,
  };
}

/** The names the HTTP API answers to in `Host` (besides IP literals and localhost): the hosts of
 * every configured address and `http.allowed_hosts`. */
function hostNames(config: Config): string[] {
  const out = new Set(config.http.allowedHosts);
  for (const n of config.nodes) {
    for (const a of [n.http, n.listenHttp, n.client, n.peer]) out.add(parseAddress(a).hostname);
  }
  return [...out];
}

/** Re-exported for status consumers. */
export { roleName };
export { InsecureBindError };
