/**
 * Turns the config's `security` and `tls` sections into what the listeners and the peer transport
 * take: the cluster secret, the TLS material of each port (PEM texts read from the files; `{id}`
 * in a path is this node's id, see `tlsFor` in config/config.ts) and the node's own HTTPS client
 * for calls to other members (forwarding to the leader, the console's cluster view).
 *
 * @module
 */
import { type Config, ConfigError, tlsFor, type TlsPort } from "../config/config.ts";
import { readSecretFile } from "../transport/peer_auth.ts";
import type { PeerSecurity } from "../transport/options.ts";
import type { ServerTlsMaterial } from "../transport/peer_conn.ts";

async function readPem(port: TlsPort, what: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new ConfigError(path, `tls.${port}.${what}`, 0, `cannot read ${what}: ${reason}`);
  }
}

/** The TLS material of `port` on node `id` (undefined: plaintext). Throws {@link ConfigError}
 * when a file cannot be read. */
export async function portTls(
  config: Config,
  id: number,
  port: TlsPort,
): Promise<ServerTlsMaterial | undefined> {
  const t = tlsFor(config, id, port);
  if (t === undefined) return undefined;
  return {
    cert: await readPem(port, "cert", t.cert),
    key: await readPem(port, "key", t.key),
    ca: t.ca === "" ? undefined : await readPem(port, "ca", t.ca),
    requestCert: t.clientCertAuth,
  };
}

/** Reads the peer credentials of node `id`: the cluster secret and the peer TLS files. */
export async function peerSecurity(config: Config, id: number): Promise<PeerSecurity> {
  const out: PeerSecurity = {};
  const s = config.security;
  if (s.peerSecretFile !== "") out.secret = await readSecretFile(s.peerSecretFile);
  const t = await portTls(config, id, "peer");
  if (t !== undefined) out.tls = { cert: t.cert, key: t.key, ca: t.ca ?? "" };
  return out;
}

/** How this node calls other members' HTTP ports: the URL scheme and a fetch trusting `ca`
 * (and presenting this node's certificate, for members that require client certificates). */
export interface MemberHttp {
  /** "http" or "https". */
  scheme: "http" | "https";
  /** fetch for member URLs. */
  fetch: typeof fetch;
  /** Closes the HTTP client. */
  close(): void;
}

/** The {@link MemberHttp} of node `id` (plain fetch when its HTTP port is plaintext). */
export function memberHttp(http: ServerTlsMaterial | undefined): MemberHttp {
  if (http === undefined) return { scheme: "http", fetch, close: () => {} };
  const client = Deno.createHttpClient({
    caCerts: http.ca ? [http.ca] : undefined,
    cert: http.cert,
    key: http.key,
  });
  return {
    scheme: "https",
    fetch: (input, init) => fetch(input, { ...init, client }),
    close: () => client.close(),
  };
}

/** Whether `hostname` names only this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * A node was asked to listen beyond loopback without the protection that needs: TLS and tokens
 * on the client and HTTP ports, TLS or the cluster secret on the peer port. `gokv server` exits
 * with code 2; `--insecure` (ServerOptions.insecure) starts it anyway.
 */
export class InsecureBindError extends Error {
  /** Creates the error listing what is exposed. */
  constructor(readonly problems: string[]) {
    super(
      `refusing to listen beyond loopback without security: ${problems.join("; ")}. ` +
        `Anyone who can reach these ports could read and change every key and the cluster ` +
        `itself. Configure tls (cert, key, ca), security.tokens_file and, for peers, tls or ` +
        `security.peer_secret_file (README "Security"; \`deno task cluster:secure\` starts a ` +
        `secured sample cluster), or start with --insecure on a network you trust.`,
    );
    this.name = "InsecureBindError";
  }
}

/** What node `id` would expose unprotected beyond loopback (empty: nothing). */
export function exposure(config: Config, id: number): string[] {
  const node = config.nodes.find((n) => n.id === id);
  if (node === undefined) return [];
  const host = (a: string) => a.replace(/:\d+$/, "");
  const out: string[] = [];
  const tokens = config.security.tokensFile !== "";
  for (const [port, addr] of [["client", node.listenClient], ["http", node.listenHttp]] as const) {
    if (isLoopback(host(addr))) continue;
    const missing = [
      tlsFor(config, id, port) === undefined ? "TLS" : "",
      tokens ? "" : "tokens",
    ].filter((m) => m !== "");
    if (missing.length > 0) out.push(`${port} ${addr} has no ${missing.join(" and no ")}`);
  }
  if (
    !isLoopback(host(node.listenPeer)) && tlsFor(config, id, "peer") === undefined &&
    config.security.peerSecretFile === ""
  ) {
    out.push(`peer ${node.listenPeer} has neither TLS nor a cluster secret`);
  }
  return out;
}
