/**
 * The etcd peer of the benchmarks (bench/cluster_bench.ts, bench/scale_bench.ts): an etcd cluster
 * of 3 (or `members`) processes on loopback with free ports and its own temporary data directory
 * (as ../shared/anchors/etcd-cluster.sh starts one, but any size and never on another run's
 * ports), and the native Go clientv3 generator ../shared/anchors/etcdload, built once into
 * bench/.tools/ (ignored by git) by its build.sh from Debian's golang-go + golang-etcd-server-dev.
 *
 * etcd: `apt-get install -y etcd-server etcd-client`.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { freePorts, ROOT, stopAll } from "./gokv_cluster.ts";

/** ../shared/anchors beside the project root (searched upwards, so a git worktree finds it too). */
function findAnchors(): string {
  for (let dir = ROOT; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dirname(dir), "shared", "anchors");
    try {
      if (Deno.statSync(candidate).isDirectory) return candidate;
    } catch { /* keep looking */ }
  }
  return resolve(ROOT, "../shared/anchors");
}

/** The anchors directory (kvload.ts, etcdload/); `GOKV_ANCHORS` overrides it. */
export const ANCHORS: string = Deno.env.get("GOKV_ANCHORS") ?? findAnchors();
const ETCDLOAD = join(ROOT, "bench", ".tools", "etcdload");

/** Whether an `etcd` binary runs. */
export async function etcdAvailable(): Promise<boolean> {
  try {
    const out = await new Deno.Command("etcd", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** The native etcd generator, built on first use; undefined (with a note) when Go is missing. */
export async function etcdload(): Promise<string | undefined> {
  try {
    if (Deno.statSync(ETCDLOAD).isFile) return ETCDLOAD;
  } catch { /* not built yet */ }
  console.error(`building the native etcd generator into ${ETCDLOAD} ...`);
  const out = await new Deno.Command("bash", {
    args: [join(ANCHORS, "etcdload", "build.sh"), ETCDLOAD],
    stdout: "null",
    stderr: "piped",
  }).output().catch(() => undefined);
  if (out?.success) return ETCDLOAD;
  console.error(
    "etcd skipped: could not build ../shared/anchors/etcdload (needs Debian's golang-go and " +
      "golang-etcd-server-dev):\n" +
      new TextDecoder().decode(out?.stderr ?? new Uint8Array()).trim(),
  );
  return undefined;
}

/** How to start an etcd cluster. */
export interface EtcdOptions {
  /** Members (default 3). */
  members?: number;
  /** `--quota-backend-bytes` (etcd's default, 2 GiB, when absent). */
  quotaBytes?: number;
  /** Keep this many revisions (`--auto-compaction-mode revision`); no auto-compaction if absent. */
  compactRevisions?: number;
}

/** A running etcd cluster. */
export interface EtcdCluster {
  /** The client endpoints (host:port). */
  endpoints: string[];
  /** The member processes' pids. */
  pids: number[];
  /** Stops every member and removes the data. */
  stop: () => Promise<void>;
}

/** Starts an etcd cluster and waits (20 s at most) until every member answers /health. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdCluster> {
  const n = opts.members ?? 3;
  const dir = await Deno.makeTempDir({ prefix: "etcd-bench-" });
  const ports = freePorts(2 * n);
  const names = Array.from({ length: n }, (_, i) => `e${i + 1}`);
  const client = (i: number) => `127.0.0.1:${ports[2 * i]}`;
  const peer = (i: number) => `http://127.0.0.1:${ports[2 * i + 1]}`;
  const initial = names.map((name, i) => `${name}=${peer(i)}`).join(",");
  const procs = names.map((name, i) =>
    new Deno.Command("etcd", {
      args: [
        "--name",
        name,
        "--data-dir",
        join(dir, name),
        "--listen-client-urls",
        `http://${client(i)}`,
        "--advertise-client-urls",
        `http://${client(i)}`,
        "--listen-peer-urls",
        peer(i),
        "--initial-advertise-peer-urls",
        peer(i),
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        "bench",
        "--log-level",
        "error",
        ...(opts.quotaBytes ? ["--quota-backend-bytes", String(opts.quotaBytes)] : []),
        ...(opts.compactRevisions
          ? [
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            String(opts.compactRevisions),
          ]
          : []),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn()
  );
  const stop = () => stopAll(procs, dir);
  const endpoints = names.map((_, i) => client(i));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const healthy = await Promise.all(
      endpoints.map((e) =>
        fetch(`http://${e}/health`, { signal: AbortSignal.timeout(500) })
          .then(async (r) => (await r.json()).health === "true")
          .catch(() => false)
      ),
    );
    if (healthy.every((h) => h)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error("etcd did not become healthy");
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { endpoints, pids: procs.map((p) => p.pid), stop };
}
