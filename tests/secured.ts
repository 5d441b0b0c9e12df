/**
 * A secured test cluster's material: a CA, certificates for nodes 1..3, a cluster secret and a
 * tokens file with an admin, a write and a read token (tests/security_test.ts,
 * tests/console_browser_test.ts).
 *
 * @module
 */
import { join } from "node:path";
import { issueCert, makeCa } from "../scripts/tls_certs.ts";
import { hashToken } from "../server/auth.ts";

/** The tokens in the tokens file, by role. */
export const TOKENS = {
  admin: "admin-token-0123456789",
  writer: "writer-token-012345",
  reader: "rdr-1",
};

/** What {@link secured} made. */
export interface Secured {
  dir: string;
  tokens: string;
  ca: string;
  caPem: string;
  extraYaml: string;
  http: Deno.HttpClient;
  close(): Promise<void>;
}

/** A CA, certificates for nodes 1..3 (CN node-<id>), a cluster secret and a tokens file. */
export async function secured(): Promise<Secured> {
  const dir = await Deno.makeTempDir({ prefix: "gokv-sec-" });
  const ca = await makeCa(dir);
  for (const id of [1, 2, 3]) await issueCert(dir, ca, `node-${id}`);
  const secret = join(dir, "secret");
  await Deno.writeTextFile(secret, crypto.randomUUID() + crypto.randomUUID());
  const tokens = join(dir, "tokens.yaml");
  await Deno.writeTextFile(
    tokens,
    [
      "tokens:",
      `  - { name: ops, role: admin, hash: "${hashToken(TOKENS.admin)}" }`,
      `  - { name: app, role: write, hash: "${hashToken(TOKENS.writer)}" }`,
      `  - { name: viewer, role: read, hash: "${hashToken(TOKENS.reader)}" }`,
    ].join("\n") + "\n",
  );
  const caPem = await Deno.readTextFile(ca.cert);
  const http = Deno.createHttpClient({ caCerts: [caPem] });
  return {
    dir,
    tokens,
    ca: ca.cert,
    caPem,
    http,
    extraYaml: [
      "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300",
      "security:",
      `  peer_secret_file: ${JSON.stringify(secret)}`,
      `  tokens_file: ${JSON.stringify(tokens)}`,
      "tls:",
      `  cert: ${JSON.stringify(join(dir, "node-{id}.crt"))}`,
      `  key: ${JSON.stringify(join(dir, "node-{id}.key"))}`,
      `  ca: ${JSON.stringify(ca.cert)}`,
      "",
    ].join("\n"),
    close: async () => {
      http.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** fetch over HTTPS trusting the CA, with a bearer token when given. */
export function https(s: Secured, token?: string) {
  return (url: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (token) headers.set("authorization", `Bearer ${token}`);
    return fetch(url, { ...init, headers, client: s.http, signal: AbortSignal.timeout(5000) });
  };
}
