/**
 * The crypto of the client and HTTP ports is checked, not assumed: a client that trusts another
 * CA, an expired server certificate, and (with client_cert_auth) a missing, foreign or expired
 * client certificate are each refused; the right ones pass.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { issueCert, makeCa } from "../scripts/tls_certs.ts";
import { configFromObject } from "../config/config.ts";
import { nullLogger } from "../raft/logger.ts";
import { Client } from "../client/client.ts";
import { UnavailableError } from "../client/errors.ts";
import { startServer } from "./server.ts";

function free(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = l.addr.port;
  l.close();
  return `127.0.0.1:${p}`;
}

async function withNode(
  tls: Record<string, unknown>,
  fn: (n: { client: string; http: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const n = { id: 1, peer: free(), client: free(), http: free() };
  const node = await startServer(
    configFromObject({ storage: "memory", data_dir: join(dir, "data"), nodes: [n], tls }),
    1,
    { logger: nullLogger },
  );
  try {
    await fn(n);
  } finally {
    await node.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const pem = (p: string) => Deno.readTextFile(p);

Deno.test("client port TLS: the right CA connects; another CA or an expired server certificate is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    const other = await makeCa(dir, "other");
    const good = await issueCert(dir, ca, "node-1");
    const ok = { caCert: await pem(ca.cert) };
    const wrong = { caCert: await pem(other.cert) };
    // Only the client port has TLS: the peer port stays plaintext (loopback).
    await withNode({ client: { cert: good.cert, key: good.key } }, async (n) => {
      const kv = await Client.connect({ endpoints: [n.client], tls: ok });
      await kv.put("k", "v");
      assert.equal(await kv.getString("k"), "v");
      await kv.close();
      await assert.rejects(
        Client.connect({ endpoints: [n.client], tls: wrong, timeoutMs: 2000 }),
        (e) => e instanceof UnavailableError && /certificate|UnknownIssuer|issuer/i.test(e.message),
      );
      // A plaintext client gets nothing from a TLS port.
      const plain = await Client.connect({ endpoints: [n.client], timeoutMs: 1500 });
      await assert.rejects(plain.getString("k"));
      await plain.close();
    });
    const expired = await issueCert(dir, ca, "expired", undefined, -1);
    await withNode({ client: { cert: expired.cert, key: expired.key } }, async (n) => {
      await assert.rejects(
        Client.connect({ endpoints: [n.client], tls: ok, timeoutMs: 2000 }),
        (e) => e instanceof UnavailableError && /expired|NotValidYet|certificate/i.test(e.message),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client_cert_auth: HTTPS and the client port refuse a missing, foreign or expired client certificate", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    const other = await makeCa(dir, "other");
    const server = await issueCert(dir, ca, "node-1");
    const mine = await issueCert(dir, ca, "client");
    const foreign = await issueCert(dir, other, "foreign");
    const expired = await issueCert(dir, ca, "old-client", undefined, -1);
    const caPem = await pem(ca.cert);
    const tls = { cert: server.cert, key: server.key, ca: ca.cert, client_cert_auth: true };
    // The peer port is left plaintext (only client and http get the block).
    await withNode({ client: { ...tls }, http: { ...tls } }, async (n) => {
      const get = async (cert?: { cert: string; key: string }) => {
        const client = Deno.createHttpClient({
          caCerts: [caPem],
          ...(cert ? { cert: await pem(cert.cert), key: await pem(cert.key) } : {}),
        });
        try {
          const res = await fetch(`https://${n.http}/healthz`, {
            client,
            signal: AbortSignal.timeout(3000),
          });
          await res.body?.cancel();
          return res.status;
        } finally {
          client.close();
        }
      };
      assert.equal(await get(mine), 200);
      for (const [name, c] of [["none", undefined], ["foreign", foreign], ["expired", expired]]) {
        await assert.rejects(get(c as typeof mine | undefined), `${name} client certificate`);
      }
      const connect = async (c?: { cert: string; key: string }) =>
        await Client.connect({
          endpoints: [n.client],
          timeoutMs: 2000,
          tls: { caCert: caPem, ...(c ? { cert: await pem(c.cert), key: await pem(c.key) } : {}) },
        });
      const kv = await connect(mine);
      assert.equal(await kv.getString("nothing"), undefined);
      await kv.close();
      for (const c of [undefined, foreign, expired]) {
        const k = await connect(c).catch((e) => e);
        if (k instanceof Client) {
          // The server may refuse after the client's half of the handshake: the first request
          // then fails.
          await assert.rejects(k.getString("x", { timeoutMs: 1500 }));
          await k.close();
        } else assert.ok(k instanceof UnavailableError, String(k));
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
