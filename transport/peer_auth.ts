/**
 * Peer authentication with a cluster secret: a challenge-response on the TCP transport's Hello
 * (transport/FORMAT.md, "Authenticated connections").
 *
 * 1. The dialer sends Hello `{from, to, nonceA}` (32 random bytes).
 * 2. The receiver answers one Challenge frame `{nonceB, proofB}` with
 *    `proofB = HMAC-SHA256(secret, "gokv-peer-v1 receiver" | from | to | nonceA | nonceB)`.
 * 3. The dialer checks `proofB` (it reached a holder of the secret, not an impostor) and sends one
 *    Auth frame `{proofA}` with the same MAC under the label `"gokv-peer-v1 dialer"`.
 *
 * Both nonces are fresh per connection, so a recorded Hello/Auth replayed on a new connection
 * fails (the receiver's nonce differs), and the claimed ids are inside the MAC, so they cannot be
 * changed without the secret. Proofs are compared in constant time.
 *
 * @module
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { NodeId } from "../raft/types.ts";

/** Bytes of a nonce. */
export const NONCE_BYTES = 32;
/** Bytes of a proof (HMAC-SHA256). */
export const PROOF_BYTES = 32;
/** Smallest accepted cluster secret, in bytes. */
export const MIN_SECRET_BYTES = 16;

/** Which side computes a proof. */
export type ProofRole = "dialer" | "receiver";

/** A fresh random nonce. */
export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

function idBytes(id: NodeId): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, Math.floor(id / 0x1_0000_0000));
  dv.setUint32(4, id >>> 0);
  return b;
}

/** The proof of `role` for one connection's parameters. */
export function peerProof(
  secret: Uint8Array,
  role: ProofRole,
  from: NodeId,
  to: NodeId,
  nonceA: Uint8Array,
  nonceB: Uint8Array,
): Uint8Array {
  const h = createHmac("sha256", secret);
  h.update(`gokv-peer-v1 ${role}`);
  h.update(idBytes(from));
  h.update(idBytes(to));
  h.update(nonceA);
  h.update(nonceB);
  return new Uint8Array(h.digest());
}

/** Constant-time check of a received proof. */
export function proofMatches(want: Uint8Array, got: Uint8Array): boolean {
  return want.length === got.length && timingSafeEqual(want, got);
}

/** The cluster secret could not be used. */
export class SecretError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "SecretError";
  }
}

/**
 * Reads a cluster secret file: its trimmed text (at least {@link MIN_SECRET_BYTES} bytes, e.g. the
 * output of `openssl rand -hex 32`) is the secret.
 */
export async function readSecretFile(path: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new SecretError(`cannot read cluster secret ${path}: ${(e as Error).message}`);
  }
  const secret = new TextEncoder().encode(text.trim());
  if (secret.length < MIN_SECRET_BYTES) {
    throw new SecretError(
      `cluster secret ${path} is ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are required`,
    );
  }
  return secret;
}
