/**
 * gokv as a library: a client for a gokv cluster, the LSM-tree storage engine on its own, and an
 * embeddable node.
 *
 * Talk to a cluster:
 * ```ts ignore
 * import { Client } from "@gokv/gokv";
 * const kv = await Client.connect({ endpoints: ["127.0.0.1:8001", "127.0.0.1:8002"] });
 * await kv.put("hello", "hello world");
 * console.log(await kv.getString("hello"));
 * await kv.close();
 * ```
 *
 * Use the storage engine directly:
 * ```ts
 * import { LsmDb } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * const db = await LsmDb.open(dir);
 * await db.put("user:1", "ada");
 * console.log(new TextDecoder().decode(await db.get("user:1")));
 * await db.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * Use a cluster as a Deno KV (the API of `Deno.Kv`, through KV Connect; README "Use gokv as your
 * Deno KV"):
 * ```ts ignore
 * import { openKv } from "@gokv/gokv";
 * const kv = await openKv("http://127.0.0.1:9001/kv", { token: "my-token" });
 * await kv.set(["users", "ada"], { name: "Ada" });
 * console.log((await kv.get(["users", "ada"])).value);
 * kv.close();
 * ```
 *
 * Embed a node:
 * ```ts ignore
 * import { startNode } from "@gokv/gokv";
 * const node = await startNode({ config: "conf/config.yaml", id: 1 });
 * ```
 *
 * @module
 */
export * from "./client/mod.ts";
export {
  BackgroundError as LsmBackgroundError,
  type BatchOperation,
  type Bytes as LsmBytes,
  ClosedError,
  type CompactRange,
  CorruptionError,
  DatabaseLockedError,
  DEFAULT_OPTIONS as LSM_DEFAULT_OPTIONS,
  type DirEntry as LsmDirEntry,
  type Env as LsmEnv,
  type EnvFile as LsmEnvFile,
  type EnvLock as LsmEnvLock,
  type FileInfo as LsmFileInfo,
  InvalidArgumentError as LsmInvalidArgumentError,
  type LevelStats,
  LsmDb,
  LsmError,
  type LsmOptions,
  type LsmStats,
  type OpenOptions as LsmOpenOptions,
  type ResolvedOptions as LsmResolvedOptions,
  type ScanOptions as LsmScanOptions,
  Snapshot as LsmSnapshot,
  type WriteOptions,
} from "./lsm/mod.ts";
export { type NodeHandle, startNode, type StartNodeOptions } from "./server/embed.ts";
export {
  MemoryNodeRestartError,
  type ServerHandle,
  type ServerOptions,
  startServer,
} from "./server/server.ts";
export type { LogFields, Logger } from "./raft/logger.ts";
export type { NodeMetrics } from "./server/server_metrics.ts";
export {
  type Config,
  ConfigError,
  configFromObject,
  defaultConfig,
  type HttpSettings,
  type KvConnectSettings,
  loadConfig,
  type LogSettings,
  type LsmSettings,
  type NodeConfig,
  parseConfig,
  type RaftSettings,
  type SecuritySettings,
  type SessionSettings,
  type TlsBlock,
  type TlsSettings,
} from "./config/config.ts";
export {
  MAX_CLIENT_FRAME_BYTES,
  MAX_KEY_BYTES,
  MAX_PEER_FRAME_BYTES,
  MAX_VALUE_BYTES,
  type NodeLimits,
} from "./config/limits.ts";
export {
  type AtomicCheck,
  AtomicOperation,
  Kv,
  type KvCommitError,
  type KvCommitResult,
  KvConnectRequestError,
  type KvConsistencyLevel,
  type KvEntry,
  type KvEntryMaybe,
  type KvKey,
  type KvKeyPart,
  KvListIterator,
  type KvListOptions,
  type KvListSelector,
  type KvMutation,
  KvU64,
  openKv,
  type OpenKvOptions,
} from "./client/kv.ts";
