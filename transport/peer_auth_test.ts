import assert from "node:assert/strict";
import { type Message, message, MessageType } from "../raft/types.ts";
import { encodeFrame, encodeHello, encodeMessageFrame, FrameDecoder, FrameType } from "./frame.ts";
import { parseAddress } from "./options.ts";
import { newNonce, NONCE_BYTES, peerProof } from "./peer_auth.ts";
import type { PeerTlsMaterial } from "./peer_conn.ts";
import { TcpTransport } from "./tcp.ts";
import { RecordingLogger, waitFor } from "./test_util.ts";
import { issueCert, makeCa } from "../scripts/tls_certs.ts";

const SECRET = new TextEncoder().encode("0123456789abcdef0123456789abcdef");
const OTHER = new TextEncoder().encode("fedcba9876543210fedcba9876543210");
const hb = (i: number, from = 1) =>
  message({ type: MessageType.Heartbeat, from, to: 2, commit: i });

async function pair(
  recv: ConstructorParameters<typeof TcpTransport>[0]["security"],
  dial: ConstructorParameters<typeof TcpTransport>[0]["security"],
  dialId = 1,
) {
  const got: Message[] = [];
  const log = new RecordingLogger();
  const b = new TcpTransport({
    id: 2,
    listen: "127.0.0.1:0",
    peers: new Map([[1, "127.0.0.1:1"], [3, "127.0.0.1:1"]]),
    security: recv,
    membersOnly: true,
    logger: log,
    reportUnreachable: false,
  });
  await b.start((m) => got.push(m));
  const a = new TcpTransport({
    id: dialId,
    listen: "127.0.0.1:0",
    peers: new Map([[2, b.address]]),
    security: dial,
    reconnectMaxMs: 50,
    reportUnreachable: false,
  });
  return { a, b, got, log };
}

/** Sends heartbeats until `got` has one or `ms` passed; returns whether any arrived. */
async function delivered(a: TcpTransport, got: Message[], ms: number, from = 1): Promise<boolean> {
  const until = Date.now() + ms;
  let i = 0;
  while (Date.now() < until) {
    a.send([hb(i++, from)]);
    if (got.length > 0) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return got.length > 0;
}

Deno.test("peer auth: peers holding the cluster secret exchange messages", async () => {
  const { a, b, got } = await pair({ secret: SECRET }, { secret: SECRET });
  try {
    assert.ok(await delivered(a, got, 5000));
    assert.equal(got[0].from, 1);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("peer auth: a wrong cluster secret or none is refused and counted", async () => {
  for (
    const [dial, reason] of [[{ secret: OTHER }, "unauthenticated"], [
      {},
      "unauthenticated",
    ]] as const
  ) {
    const { a, b, got } = await pair({ secret: SECRET }, dial);
    try {
      await waitFor(() => (b.stats.unauthenticated[reason] ?? 0) >= 2, 5000, reason, () => {
        a.send([hb(1)]);
      });
      assert.equal(got.length, 0, "nothing from a dialer without the secret is delivered");
    } finally {
      await a.close();
      await b.close();
    }
  }
});

Deno.test("peer auth: a replayed Hello and Auth fail on a new connection", async () => {
  const got: Message[] = [];
  const b = new TcpTransport({
    id: 2,
    listen: "127.0.0.1:0",
    peers: new Map([[1, "x:1"]]),
    security: { secret: SECRET },
    membersOnly: true,
  });
  await b.start((m) => got.push(m));
  const { hostname, port } = parseAddress(b.address);
  const nonceA = newNonce();
  const hello = encodeHello({ from: 1, to: 2, nonce: nonceA });
  const readChallenge = async (c: Deno.Conn) => {
    const dec = new FrameDecoder();
    const buf = new Uint8Array(256);
    for (;;) {
      const n = await c.read(buf);
      assert.notEqual(n, null);
      dec.push(buf.subarray(0, n!));
      const f = dec.next();
      if (f !== null) return f.payload.slice(0, NONCE_BYTES);
    }
  };
  try {
    // A legitimate session (we hold the secret here), recorded.
    const c1 = await Deno.connect({ hostname, port });
    await c1.write(hello);
    const nonceB = await readChallenge(c1);
    const auth = encodeFrame(FrameType.Auth, peerProof(SECRET, "dialer", 1, 2, nonceA, nonceB));
    await c1.write(auth);
    await c1.write(encodeMessageFrame(hb(7)));
    await waitFor(() => got.length === 1, 5000, "recorded session delivers");
    c1.close();
    // The attacker replays the recorded bytes on a new connection: the receiver's nonce differs.
    const c2 = await Deno.connect({ hostname, port });
    await c2.write(hello);
    await readChallenge(c2);
    await c2.write(auth);
    await c2.write(encodeMessageFrame(hb(8)));
    await waitFor(() => (b.stats.unauthenticated["bad-proof"] ?? 0) === 1, 5000, "bad-proof");
    c2.close();
    assert.deepStrictEqual(got.map((m) => m.commit), [7]);
  } finally {
    await b.close();
  }
});

Deno.test("peer auth: a non-member is refused, and a removed member's messages are dropped", async () => {
  const { a, b, got } = await pair({}, {}, 4); // node 4 is not among node 2's peers
  try {
    await waitFor(
      () => (b.stats.unauthenticated["unknown-peer"] ?? 0) >= 1,
      5000,
      "refused",
      () => {
        a.send([hb(1, 4)]);
      },
    );
    assert.equal(got.length, 0);
    assert.ok(b.stats.nonMemberDropped >= 1);
  } finally {
    await a.close();
    await b.close();
  }
  const p = await pair({}, {});
  try {
    assert.ok(await delivered(p.a, p.got, 5000));
    p.b.removePeer(1);
    const before = p.got.length;
    const dropped = p.b.stats.nonMemberDropped;
    await waitFor(() => p.b.stats.nonMemberDropped > dropped, 5000, "dropped", () => {
      p.a.send([hb(99)]);
    });
    assert.equal(p.got.length, before, "no message of a removed member is delivered");
  } finally {
    await p.a.close();
    await p.b.close();
  }
});

Deno.test("peer mTLS: a good certificate passes; another CA, an expired one or another id fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    const other = await makeCa(dir, "other-ca");
    const read = async (c: { cert: string; key: string }, caPath: string) => ({
      cert: await Deno.readTextFile(c.cert),
      key: await Deno.readTextFile(c.key),
      ca: await Deno.readTextFile(caPath),
    } as PeerTlsMaterial);
    const n2 = await read(await issueCert(dir, ca, "node-2"), ca.cert);
    const good = await read(await issueCert(dir, ca, "node-1"), ca.cert);
    const foreign = await read(await issueCert(dir, other, "node-1"), ca.cert);
    const expired = await read(await issueCert(dir, ca, "node-1", undefined, -1), ca.cert);
    const n3 = await read(await issueCert(dir, ca, "node-3"), ca.cert);

    const ok = await pair({ tls: n2, secret: SECRET }, { tls: good, secret: SECRET });
    try {
      assert.ok(await delivered(ok.a, ok.got, 8000), "mutual TLS with good certificates");
    } finally {
      await ok.a.close();
      await ok.b.close();
    }
    for (const [name, m] of [["another CA", foreign], ["expired", expired]] as const) {
      const p = await pair({ tls: n2 }, { tls: m });
      try {
        assert.equal(await delivered(p.a, p.got, 1500), false, `${name} certificate refused`);
      } finally {
        await p.a.close();
        await p.b.close();
      }
    }
    // Node 3's valid certificate cannot claim to be node 1.
    const p = await pair({ tls: n2 }, { tls: n3 });
    try {
      await waitFor(
        () => (p.b.stats.unauthenticated["wrong-identity"] ?? 0) >= 1,
        8000,
        "id",
        () => {
          p.a.send([hb(1)]);
        },
      );
      assert.equal(p.got.length, 0);
    } finally {
      await p.a.close();
      await p.b.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
