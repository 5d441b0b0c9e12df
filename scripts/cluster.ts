/**
 * Local cluster management for `deno task cluster | stop-cluster | clean`.
 *
 * - `start [--config FILE] [--run-dir DIR] [--timeout-ms N] [--secure]`: starts every node of the
 *   config in the background (pid files and logs under the run directory), waits until a leader
 *   is elected and prints the endpoints. Environment variables (GOKV_*) are passed on to the
 *   nodes. `--secure` (or `GOKV_SECURE=1`; `deno task cluster:secure`) first makes a local CA,
 *   node certificates, a cluster secret and an admin token under `<run-dir>/secure/` (kept for
 *   the next start) and turns on TLS on every port, peer authentication and tokens through the
 *   nodes' environment (`GOKV_TLS_*`, `GOKV_SECURITY_*`).
 * - `stop [--run-dir DIR] [--timeout-ms N]`: SIGTERM, then SIGKILL after the timeout.
 * - `clean [--config FILE] [--run-dir DIR]`: stops what runs, removes data, logs and dist/.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Config, ConfigError, loadConfig } from "../config/config.ts";
import { issueCert, makeCa } from "./tls_certs.ts";
import { hashToken, newToken } from "../server/auth.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** Whether an executable named `name` is on PATH (e.g. installed by `deno task install`). */
function onPath(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const st = Deno.statSync(join(dir, name));
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return true;
    } catch { /* not here */ }
  }
  return false;
}

async function readPids(runDir: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  try {
    for await (const e of Deno.readDir(runDir)) {
      const m = /^node-(\d+)\.pid$/.exec(e.name);
      if (!m) continue;
      const pid = Number((await Deno.readTextFile(join(runDir, e.name))).trim());
      if (Number.isInteger(pid) && pid > 0) out.set(Number(m[1]), pid);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

async function waitFor(
  pred: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return await pred();
}

/** What `--secure` made: files under `dir`, the nodes' environment, an admin token. */
interface SecureSetup {
  dir: string;
  ca: string;
  token: string;
  env: Record<string, string>;
  http: Deno.HttpClient;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes (once) a local CA, a certificate per node, a cluster secret and an admin token. */
async function secureSetup(config: Config, runDir: string): Promise<SecureSetup> {
  const dir = join(runDir, "secure");
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const caCert = join(dir, "ca.crt");
  if (!(await exists(caCert))) {
    const ca = await makeCa(dir);
    for (const n of config.nodes) await issueCert(dir, ca, `node-${n.id}`);
    const token = newToken();
    await Deno.writeTextFile(join(dir, "admin.token"), `${token}\n`, { mode: 0o600 });
    await Deno.writeTextFile(
      join(dir, "tokens.yaml"),
      `tokens:\n  - name: admin\n    role: admin\n    hash: ${hashToken(token)}\n`,
    );
    const secret = new Uint8Array(32);
    crypto.getRandomValues(secret);
    await Deno.writeTextFile(
      join(dir, "cluster.secret"),
      [...secret].map((b) => b.toString(16).padStart(2, "0")).join("") + "\n",
      { mode: 0o600 },
    );
  }
  for (const n of config.nodes) {
    if (!(await exists(join(dir, `node-${n.id}.crt`)))) {
      await issueCert(dir, { cert: caCert, key: join(dir, "ca.key") }, `node-${n.id}`);
    }
  }
  const caPem = await Deno.readTextFile(caCert);
  return {
    dir,
    ca: caCert,
    token: (await Deno.readTextFile(join(dir, "admin.token"))).trim(),
    env: {
      GOKV_TLS_CERT: join(dir, "node-{id}.crt"),
      GOKV_TLS_KEY: join(dir, "node-{id}.key"),
      GOKV_TLS_CA: caCert,
      GOKV_SECURITY_PEER_SECRET_FILE: join(dir, "cluster.secret"),
      GOKV_SECURITY_TOKENS_FILE: join(dir, "tokens.yaml"),
    },
    http: Deno.createHttpClient({ caCerts: [caPem] }),
  };
}

async function leaderOf(config: Config, sec?: SecureSetup): Promise<number | undefined> {
  for (const n of config.nodes) {
    try {
      const res = await fetch(`${sec ? "https" : "http"}://${n.http}/v1/status`, {
        signal: AbortSignal.timeout(500),
        client: sec?.http,
        headers: sec ? { authorization: `Bearer ${sec.token}` } : {},
      });
      const body = await res.json();
      if (body.role === "leader") return n.id;
    } catch {
      // not up yet
    }
  }
  return undefined;
}

async function start(
  configPath: string,
  runDir: string,
  timeoutMs: number,
  secure: boolean,
): Promise<number> {
  let config = await loadConfig(configPath);
  await Deno.mkdir(runDir, { recursive: true });
  const sec = secure ? await secureSetup(config, runDir) : undefined;
  // Validate the secured settings here rather than in three node logs.
  if (sec) config = await loadConfig(configPath, { ...Deno.env.toObject(), ...sec.env });
  const running = await readPids(runDir);
  const deno = Deno.execPath();
  for (const node of config.nodes) {
    const old = running.get(node.id);
    if (old !== undefined && alive(old)) {
      console.log(`node ${node.id} already running (pid ${old})`);
      continue;
    }
    const log = join(runDir, `node-${node.id}.log`);
    // `exec` replaces the shell, so the pid we record is the node's own.
    const cmd = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'log="$1"; shift; exec "$@" >>"$log" 2>&1 </dev/null',
        "sh",
        log,
        deno,
        "run",
        "-A",
        join(ROOT, "main.ts"),
        "server",
        "--config",
        configPath,
        "--id",
        String(node.id),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
      env: sec?.env ?? {},
    });
    const child = cmd.spawn();
    child.unref();
    await Deno.writeTextFile(join(runDir, `node-${node.id}.pid`), `${child.pid}\n`);
    console.log(`started node ${node.id} (pid ${child.pid}, log ${log})`);
  }
  let leader: number | undefined;
  const ok = await waitFor(
    async () => (leader = await leaderOf(config, sec)) !== undefined,
    timeoutMs,
  );
  sec?.http.close();
  if (!ok) {
    console.error(
      `no leader elected within ${timeoutMs} ms; see the logs in ${runDir} (stop with deno task stop-cluster)`,
    );
    return 1;
  }
  console.log(`\nleader elected: node ${leader}`);
  console.log(`storage=${config.storage} transport=${config.transport}\nendpoints:`);
  const scheme = sec ? "https" : "http";
  for (const n of config.nodes) {
    console.log(`  node ${n.id}: client ${n.client}  http ${scheme}://${n.http}  peer ${n.peer}`);
  }
  const lead = config.nodes.find((n) => n.id === leader) ?? config.nodes[0];
  console.log(`console: ${scheme}://${lead.http}/ui`);
  // Deno KV through KV Connect: any node's /kv (README "Use gokv as your Deno KV").
  if (config.kvConnect.accessToken) {
    console.log(
      `deno kv: ${scheme}://${lead.http}/kv  (Deno.openKv(url) with --unstable-kv and ` +
        `DENO_KV_ACCESS_TOKEN=${config.kvConnect.accessToken})`,
    );
  } else {
    console.log(
      `deno kv: ${scheme}://${lead.http}/kv  (set kv_connect.access_token or ` +
        `GOKV_KV_CONNECT_ACCESS_TOKEN to enable it)`,
    );
  }
  const gokv = onPath("gokv") ? "gokv" : "deno run -A main.ts";
  if (sec) {
    const rel = (p: string) => p.startsWith(ROOT + "/") ? p.slice(ROOT.length + 1) : p;
    console.log(
      `\nsecured: TLS on every port (CA ${rel(sec.ca)}), peers authenticated, tokens required` +
        `\nadmin token: ${sec.token} (in ${rel(join(sec.dir, "admin.token"))})` +
        `\n\ntry: export GOKV_CACERT=${rel(sec.ca)} GOKV_TOKEN=$(cat ${
          rel(join(sec.dir, "admin.token"))
        })` +
        `\n     ${gokv} set hello "hello world"` +
        `\n     curl --cacert $GOKV_CACERT -H "Authorization: Bearer $GOKV_TOKEN" ${scheme}://${lead.http}/v1/kv/hello` +
        `\n     (the console asks for the token; trust ${rel(sec.ca)} in the browser first)` +
        `\n     more tokens: ${gokv} token new --name NAME --role read|write|admin`,
    );
    return 0;
  }
  if (onPath("gokv")) {
    console.log(`\ntry: gokv set hello "hello world"`);
  } else {
    console.log(
      `\ntry: deno run -A main.ts set hello "hello world"` +
        `\n     (or \`deno task install\` once, then: gokv set hello "hello world")`,
    );
  }
  return 0;
}

async function stop(runDir: string, timeoutMs: number): Promise<number> {
  const pids = await readPids(runDir);
  if (pids.size === 0) {
    console.log("no cluster is running");
    return 0;
  }
  for (const [id, pid] of pids) {
    if (alive(pid)) {
      Deno.kill(pid, "SIGTERM");
      console.log(`stopping node ${id} (pid ${pid})`);
    }
  }
  let forced = 0;
  await waitFor(() => [...pids.values()].every((p) => !alive(p)), timeoutMs);
  for (const [id, pid] of pids) {
    if (alive(pid)) {
      Deno.kill(pid, "SIGKILL");
      forced++;
      console.log(`node ${id} did not stop within ${timeoutMs} ms: killed`);
    }
    await Deno.remove(join(runDir, `node-${id}.pid`)).catch(() => {});
  }
  console.log(forced ? `stopped (${forced} forced)` : "stopped");
  return 0;
}

async function clean(configPath: string, runDir: string): Promise<number> {
  await stop(runDir, 5000);
  let dataDir = "data";
  try {
    dataDir = (await loadConfig(configPath)).dataDir;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
  }
  for (const dir of [dataDir, runDir, join(ROOT, "dist")]) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    console.log(`removed ${dir}`);
  }
  return 0;
}

if (import.meta.main) {
  let code = 2;
  try {
    const { positionals, values } = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        config: { type: "string", default: "conf/config.yaml" },
        "run-dir": { type: "string", default: "run" },
        "timeout-ms": { type: "string", default: "" },
        secure: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
    });
    const [action] = positionals;
    const runDir = resolve(values["run-dir"]);
    const configPath = resolve(values.config);
    const timeout = values["timeout-ms"] ? Number(values["timeout-ms"]) : undefined;
    if (values.help || !["start", "stop", "clean"].includes(action ?? "")) {
      console.log(
        "Usage: deno run -A scripts/cluster.ts start|stop|clean [--config FILE] [--secure]",
      );
      code = values.help ? 0 : 2;
    } else if (action === "start") {
      const secure = values.secure || /^(1|true|yes|on)$/i.test(Deno.env.get("GOKV_SECURE") ?? "");
      code = await start(configPath, runDir, timeout ?? 30_000, secure);
    } else if (action === "stop") code = await stop(runDir, timeout ?? 10_000);
    else code = await clean(configPath, runDir);
  } catch (e) {
    console.error(e instanceof ConfigError ? `config error: ${e.message}` : String(e));
    code = 2;
  }
  Deno.exit(code);
}
