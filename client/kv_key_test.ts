import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeKey, encodeKey, type KvKey, KvKeyError, type KvKeyPart } from "./kv_key.ts";
import { suffixVersionstampedKey } from "../storage/kv_model.ts";
import { compareBytes } from "../storage/bytes.ts";
import { decodeSnapshotRead, encodeSnapshotReadOutput } from "./kv_connect_codec.ts";

const b = (...x: number[]) => new Uint8Array(x);

Deno.test("explicit encodings (strings, escaped zero bytes, tuples)", () => {
  assert.deepEqual(encodeKey(["hello"]), b(0x02, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00));
  assert.deepEqual(
    encodeKey([b(0x01, 0x02, 0x00, 0x07, 0x08)]),
    b(0x01, 0x01, 0x02, 0x00, 0xff, 0x07, 0x08, 0x00),
  );
  assert.deepEqual(
    encodeKey(["hello", b(0x01, 0x02, 0x00, 0x07, 0x08)]),
    b(0x02, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, 0x01, 0x01, 0x02, 0x00, 0xff, 0x07, 0x08, 0x00),
  );
  assert.deepEqual(encodeKey([0n]), b(0x14));
  assert.deepEqual(encodeKey([1n]), b(0x15, 0x01));
  assert.deepEqual(encodeKey([-1n]), b(0x13, 0xfe));
  assert.deepEqual(encodeKey([256n]), b(0x16, 0x01, 0x00));
  assert.deepEqual(encodeKey([2n ** 64n]), b(0x1d, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0));
  assert.deepEqual(encodeKey([-(2n ** 64n)]), b(0x0b, 0xf6, 0xfe, ...new Array(8).fill(0xff)));
  assert.deepEqual(encodeKey([false, true]), b(0x26, 0x27));
  assert.deepEqual(encodeKey([1]), b(0x21, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0));
  assert.deepEqual(encodeKey([-1]), b(0x21, 0x40, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
  assert.deepEqual(encodeKey([NaN]), b(0x21, 0xff, 0xf8, 0, 0, 0, 0, 0, 0));
  assert.deepEqual(encodeKey([]), b());
});

Deno.test("the state machine's versionstamped key is the key plus a string part of 20 hex digits", () => {
  const vs = b(0, 0, 0, 0, 0, 0, 0, 0x2a, 0, 1);
  assert.deepEqual(
    decodeKey(suffixVersionstampedKey(encodeKey(["log"]), vs)),
    ["log", "000000000000002a0001"],
  );
});

Deno.test("bad keys and bad bytes are KvKeyErrors", () => {
  assert.throws(() => encodeKey([{} as unknown as KvKeyPart]), KvKeyError);
  assert.throws(() => encodeKey([2n ** 2048n]), KvKeyError);
  assert.throws(() => decodeKey(b(0x02, 0x61)), /unterminated/);
  assert.throws(() => decodeKey(b(0x03)), /invalid key part tag 0x03/);
  assert.throws(() => decodeKey(b(0x16, 0x01)), /truncated/);
  assert.throws(() => decodeKey(b(0x21, 1, 2)), /truncated/);
  assert.throws(() => decodeKey(b(0x02, 0xff, 0x00)), /UTF-8/);
});

const TYPE_RANK = (p: KvKeyPart) =>
  p instanceof Uint8Array
    ? 0
    : typeof p === "string"
    ? 1
    : typeof p === "bigint"
    ? 2
    : typeof p === "number"
    ? 3
    : p === false
    ? 4
    : 5;

function comparePart(a: KvKeyPart, b: KvKeyPart): number {
  const ra = TYPE_RANK(a), rb = TYPE_RANK(b);
  if (ra !== rb) return Math.sign(ra - rb);
  if (a instanceof Uint8Array) return Math.sign(compareBytes(a, b as Uint8Array));
  if (typeof a === "string") {
    return Math.sign(
      compareBytes(new TextEncoder().encode(a), new TextEncoder().encode(b as string)),
    );
  }
  if (typeof a === "bigint") return a < (b as bigint) ? -1 : a > (b as bigint) ? 1 : 0;
  if (typeof a === "number") {
    const y = b as number;
    if (Number.isNaN(a) || Number.isNaN(y)) return Number.isNaN(a) ? (Number.isNaN(y) ? 0 : 1) : -1;
    if (a === y) return Object.is(a, y) ? 0 : Object.is(a, -0) ? -1 : 1;
    return a < y ? -1 : 1;
  }
  return 0;
}

function compareKeys(a: KvKey, b: KvKey): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = comparePart(a[i], b[i]);
    if (c !== 0) return c;
  }
  return Math.sign(a.length - b.length);
}

const part: fc.Arbitrary<KvKeyPart> = fc.oneof(
  fc.uint8Array({ maxLength: 8 }).map((u) => u.map((x) => x % 3 === 0 ? 0 : x)),
  fc.string({ maxLength: 6, unit: "binary" }),
  fc.string({ maxLength: 4 }).map((s) => s.replace(/a/g, "\0")),
  fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
  fc.bigInt({ min: -300n, max: 300n }),
  fc.double(),
  fc.constantFrom(0, -0, 1, -1, Infinity, -Infinity, NaN),
  fc.boolean(),
);
const key = fc.array(part, { maxLength: 4 });

Deno.test("property: decode(encode(k)) is k", () => {
  fc.assert(
    fc.property(key, (k) => {
      assert.deepEqual(decodeKey(encodeKey(k)), k);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: byte order of encoded keys is the order of the tuples", () => {
  fc.assert(
    fc.property(key, key, (a, b) => {
      assert.equal(Math.sign(compareBytes(encodeKey(a), encodeKey(b))), compareKeys(a, b));
    }),
    { numRuns: 3000 },
  );
});

Deno.test("property: a key's encoding starts with the encoding of each of its prefixes", () => {
  fc.assert(fc.property(key, part, (k, p) => {
    const prefix = encodeKey(k);
    const longer = encodeKey([...k, p]);
    assert.deepEqual(longer.subarray(0, prefix.length), prefix);
    // Every longer key sorts strictly between prefix ++ 0x00 and prefix ++ 0xff (list selectors).
    assert.ok(compareBytes(longer, new Uint8Array([...prefix, 0x00])) > 0);
    assert.ok(compareBytes(longer, new Uint8Array([...prefix, 0xff])) < 0);
  }));
});

/**
 * The Deno runtime is the reference: a child `deno run --unstable-kv` calls `Deno.openKv(url)`
 * and `kv.get(key)` for every key below against a recording KV Connect endpoint in this process;
 * each snapshot_read carries `encode(key)` as its range start, which must equal our encoding.
 */
Deno.test("keys encode exactly as the Deno runtime's own client encodes them", async () => {
  const KEYS_SRC = `[
    ["a"], ["users", "ada"], [""], ["\\u0000x"], ["zé", "日本"],
    [new Uint8Array([0, 1, 255, 0])], [new Uint8Array()],
    [0n], [1n], [-1n], [255n], [256n], [-256n], [2n ** 63n], [-(2n ** 63n)], [2n ** 64n],
    [-(2n ** 64n) - 1n], [10n ** 40n], [-(10n ** 40n)],
    [0], [-0], [1], [-1], [0.5], [1e300], [-1e-300], [Infinity], [-Infinity], [NaN],
    [false], [true], ["mixed", 1n, 2.5, true, new Uint8Array([7])],
  ]`;
  const keys: KvKey[] = (0, eval)(KEYS_SRC);
  const seen: Uint8Array[] = [];
  const token = "cross-check-token-123";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const body = new Uint8Array(await req.arrayBuffer());
    if (path === "/") {
      return Response.json({
        version: 3,
        databaseId: "00000000-0000-4000-8000-000000000001",
        endpoints: [{ url: "/v3", consistency: "strong" }],
        token,
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
      });
    }
    const read = decodeSnapshotRead(body);
    for (const r of read.ranges) seen.push(r.start);
    return new Response(
      encodeSnapshotReadOutput({
        ranges: read.ranges.map(() => ({ values: [] })),
        readDisabled: false,
        readIsStronglyConsistent: true,
        status: 1,
      }) as Uint8Array<ArrayBuffer>,
      { headers: { "content-type": "application/x-protobuf" } },
    );
  });
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/child.ts`;
    await Deno.writeTextFile(
      script,
      `const kv = await Deno.openKv(${JSON.stringify(`http://127.0.0.1:${server.addr.port}`)});
       for (const k of ${KEYS_SRC}) await kv.get(k);
       kv.close();`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", script],
      env: { DENO_KV_ACCESS_TOKEN: token, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(seen.length, keys.length);
    for (let i = 0; i < keys.length; i++) {
      assert.deepEqual(seen[i], encodeKey(keys[i]), `key ${i}`);
      assert.deepEqual(decodeKey(seen[i]), keys[i], `key ${i} decodes`);
    }
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
