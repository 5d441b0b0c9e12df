/**
 * A local certificate authority and node certificates made with the system's `openssl` (no
 * hand-written ASN.1): for `deno task cluster:secure` and the TLS tests.
 *
 * @module
 */
import { join } from "node:path";

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Paths of one issued certificate. */
export interface IssuedCert {
  /** PEM certificate path. */
  cert: string;
  /** PEM private key path. */
  key: string;
}

/** `openssl req` arguments that generate a new unencrypted P-256 key into `keyFile`. */
function newP256Key(keyFile: string): string[] {
  return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile];
}

/** Creates `dir/<name>.crt` and `.key`: a self-signed P-256 CA valid for `days`. */
export async function makeCa(dir: string, name = "ca", days = 365): Promise<IssuedCert> {
  await Deno.mkdir(dir, { recursive: true });
  await openssl([
    "req",
    "-x509",
    ...newP256Key(`${name}.key`),
    "-out",
    `${name}.crt`,
    "-days",
    String(days),
    "-subj",
    `/CN=gokv ${name}`,
  ], dir);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/**
 * Issues `dir/<cn>.crt` and `.key` signed by `ca`, for server and client use, with IP/DNS
 * subject alternative names `hosts`. `days` may be negative (an already expired certificate).
 */
export async function issueCert(
  dir: string,
  ca: IssuedCert,
  cn: string,
  hosts: string[] = ["127.0.0.1", "localhost"],
  days = 365,
): Promise<IssuedCert> {
  const san = hosts.map((h) => /^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`).join(",");
  await Deno.writeTextFile(
    join(dir, `${cn}.ext`),
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  await openssl([
    "req",
    ...newP256Key(`${cn}.key`),
    "-out",
    `${cn}.csr`,
    "-subj",
    `/CN=${cn}`,
  ], dir);
  await openssl([
    "x509",
    "-req",
    "-in",
    `${cn}.csr`,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    `${cn}.crt`,
    "-days",
    String(days),
    "-extfile",
    `${cn}.ext`,
  ], dir);
  return { cert: join(dir, `${cn}.crt`), key: join(dir, `${cn}.key`) };
}
