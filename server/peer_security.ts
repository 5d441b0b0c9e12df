/**
 * Turns the config's `security` section into the transport's {@link PeerSecurity}: the cluster
 * secret and the peer TLS files (`{id}` in a path is this node's id).
 *
 * @module
 */
import type { Config } from "../config/config.ts";
import { readSecretFile } from "../transport/peer_auth.ts";
import type { PeerSecurity } from "../transport/options.ts";

/** Reads the files named by `config.security` for node `id`. */
export async function peerSecurity(config: Config, id: number): Promise<PeerSecurity> {
  const s = config.security;
  const out: PeerSecurity = {};
  if (s.peerSecretFile !== "") out.secret = await readSecretFile(s.peerSecretFile);
  if (s.peerCert !== "") {
    const path = (p: string) => p.replaceAll("{id}", String(id));
    out.tls = {
      cert: await Deno.readTextFile(path(s.peerCert)),
      key: await Deno.readTextFile(path(s.peerKey)),
      ca: await Deno.readTextFile(path(s.peerCa)),
    };
  }
  return out;
}
