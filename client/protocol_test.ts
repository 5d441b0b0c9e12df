import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Consistency,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeRequestTo,
  encodeResponse,
  encodeResponseTo,
  FrameReader,
  FrameWriter,
  MAX_FRAME,
  Op,
  ProtocolError,
  type Request,
  type Response,
  Status,
} from "./protocol.ts";

const bytes = fc.uint8Array({ maxLength: 64 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const addr = fc.string({ maxLength: 20 });
const consistency = fc.constantFrom(Consistency.Linearizable, Consistency.Serializable);
const seq = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const clientId = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

const vs = fc.uint8Array({ minLength: 10, maxLength: 10 });
const u64b = fc.uint8Array({ minLength: 8, maxLength: 8 });
const encoding = fc.constantFrom(1, 2, 3) as fc.Arbitrary<1 | 2 | 3>;
const expireAt = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const mutationArb = fc.oneof(
  fc.record({
    type: fc.constantFrom("set" as const, "setSuffixVersionstampedKey" as const),
    key: bytes,
    value: bytes,
    encoding,
    expireAt,
  }, { requiredKeys: ["type", "key", "value", "encoding"] }),
  fc.record({ type: fc.constant("delete" as const), key: bytes }),
  fc.record({
    type: fc.constant("sum" as const),
    key: bytes,
    value: u64b,
    min: u64b,
    max: u64b,
    clamp: fc.constant(true as const),
  }, { requiredKeys: ["type", "key", "value"] }),
  fc.record({ type: fc.constantFrom("min" as const, "max" as const), key: bytes, value: u64b }),
);
const entryArb = fc.record({ key: bytes, value: bytes, encoding, versionstamp: vs, expireAt }, {
  requiredKeys: ["key", "value", "encoding", "versionstamp"],
});

const requestArb: fc.Arbitrary<Request> = fc.oneof(
  fc.record({
    op: fc.constant(Op.Atomic as const),
    id: u32,
    clientId,
    seq,
    checks: fc.array(fc.record({ key: bytes, versionstamp: fc.option(vs, { nil: null }) }), {
      maxLength: 4,
    }),
    mutations: fc.array(mutationArb, { maxLength: 6 }),
  }),
  fc.record({
    op: fc.constant(Op.GetMany as const),
    id: u32,
    consistency,
    keys: fc.array(bytes, { maxLength: 5 }),
  }),
  fc.record({
    op: fc.constant(Op.Range as const),
    id: u32,
    consistency,
    range: fc.record(
      {
        start: bytes,
        end: bytes,
        prefix: bytes,
        limit: fc.integer({ min: 1, max: 0xffffffff }),
        reverse: fc.constant(true),
        cursor: fc.uint8Array({ minLength: 1, maxLength: 8 }),
      },
      { requiredKeys: [] },
    ),
  }),
  fc.record({ op: fc.constant(Op.Put as const), id: u32, key: bytes, value: bytes, clientId, seq }),
  fc.record({ op: fc.constant(Op.Get as const), id: u32, key: bytes, consistency }),
  fc.record({ op: fc.constant(Op.Delete as const), id: u32, key: bytes, clientId, seq }),
  fc.record({
    op: fc.constant(Op.Scan as const),
    id: u32,
    consistency,
    range: fc.record(
      { start: bytes, end: bytes, prefix: bytes, limit: fc.integer({ min: 1, max: 0xffffffff }) },
      { requiredKeys: [] },
    ),
  }),
  fc.record({ op: fc.constant(Op.Members as const), id: u32 }),
  fc.record({ op: fc.constant(Op.Status as const), id: u32 }),
  fc.record({
    op: fc.constant(Op.MemberAdd as const),
    id: u32,
    member: fc.record({ id: u32, peer: addr, client: addr, http: addr }),
  }),
  fc.record({ op: fc.constant(Op.MemberRemove as const), id: u32, nodeId: u32 }),
  fc.record({ op: fc.constant(Op.Transfer as const), id: u32, nodeId: u32 }),
);

const opArb = fc.constantFrom(...[1, 2, 3, 4, 5, 6, 7, 8, 9] as Op[]);
const responseArb: fc.Arbitrary<Response> = fc.oneof(
  fc.record({
    op: fc.constant(Op.Atomic),
    id: u32,
    status: fc.constant(Status.Ok),
    versionstamp: vs,
  }),
  fc.record({
    op: fc.constant(Op.Atomic),
    id: u32,
    status: fc.constant(Status.Ok),
    failedChecks: fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 10 }),
  }),
  fc.record({
    op: fc.constant(Op.GetMany),
    id: u32,
    status: fc.constant(Status.Ok),
    consistency,
    entries: fc.array(fc.option(entryArb, { nil: null }), { maxLength: 4 }),
  }),
  fc.record({
    op: fc.constant(Op.Range),
    id: u32,
    status: fc.constant(Status.Ok),
    consistency,
    entries: fc.array(entryArb, { maxLength: 4 }),
    next: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }, { requiredKeys: ["op", "id", "status", "consistency", "entries"] }),
  fc.record({
    op: fc.constant(Op.Atomic),
    id: u32,
    status: fc.constant(Status.MutationType),
    message: addr,
  }),
  fc.record({ op: fc.constant(Op.Get), id: u32, status: fc.constant(Status.Ok), value: bytes }),
  fc.record({
    op: fc.constant(Op.Scan),
    id: u32,
    status: fc.constant(Status.Ok),
    pairs: fc.array(fc.tuple(bytes, bytes), { maxLength: 5 }),
  }),
  fc.record({
    op: fc.constant(Op.Members),
    id: u32,
    status: fc.constant(Status.Ok),
    members: fc.array(
      fc.record({ id: u32, learner: fc.boolean(), peer: addr, client: addr, http: addr }),
      { maxLength: 5 },
    ),
  }),
  fc.record({ op: fc.constant(Op.Status), id: u32, status: fc.constant(Status.Ok), json: addr }),
  fc.record({ op: fc.constantFrom(Op.Put, Op.Delete), id: u32, status: fc.constant(Status.Ok) }),
  fc.record({
    op: opArb,
    id: u32,
    status: fc.constant(Status.NotLeader),
    leaderId: u32,
    leaderAddr: addr,
    message: addr,
  }),
  fc.record({
    op: opArb,
    id: u32,
    status: fc.constantFrom(
      Status.NotFound,
      Status.Timeout,
      Status.Unavailable,
      Status.InvalidArgument,
      Status.Internal,
    ),
    message: addr,
  }),
);

function body(frame: Uint8Array): Uint8Array {
  const len = new DataView(frame.buffer, frame.byteOffset).getUint32(0);
  assert.equal(len, frame.length - 4);
  return frame.subarray(4);
}

Deno.test("every request survives an encode/decode round trip", () => {
  fc.assert(
    fc.property(requestArb, (req) => {
      const got = decodeRequest(body(encodeRequest(req)));
      if (req.op === Op.Scan || req.op === Op.Range) {
        const r = { ...req.range };
        if (r.limit === 0) delete r.limit;
        assert.deepEqual(got, structuredClone({ ...req, range: r }));
      } else {
        assert.deepEqual(got, structuredClone(req));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("every response survives an encode/decode round trip", () => {
  fc.assert(
    fc.property(responseArb, (res) => {
      assert.deepEqual(decodeResponse(body(encodeResponse(res))), structuredClone(res));
    }),
    { numRuns: 500 },
  );
});

Deno.test("random bytes decode to a request/response or throw ProtocolError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      for (const decode of [decodeRequest, decodeResponse]) {
        try {
          decode(b);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `unexpected ${(e as Error).name}`);
        }
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("truncating or corrupting a valid request never escapes as a non-protocol error", () => {
  fc.assert(
    fc.property(requestArb, fc.nat(), fc.nat(255), (req, cut, flip) => {
      const b = body(encodeRequest(req)).slice();
      const truncated = b.subarray(0, cut % b.length);
      assert.throws(() => decodeRequest(truncated), ProtocolError);
      b[cut % b.length] ^= flip || 1;
      try {
        decodeRequest(b);
      } catch (e) {
        assert.ok(e instanceof ProtocolError);
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("an unknown op and trailing bytes are protocol errors", () => {
  assert.throws(() => decodeRequest(new Uint8Array([42, 0, 0, 0, 1])), /unknown op 42/);
  const frame = encodeRequest({ op: Op.Members, id: 7 });
  const extra = new Uint8Array(frame.length - 4 + 1);
  extra.set(frame.subarray(4));
  assert.throws(() => decodeRequest(extra), /trailing/);
  assert.throws(() => decodeResponse(frame.subarray(4)), /response bit/);
});

Deno.test("the frame reader splits a stream fed in arbitrary chunks", () => {
  fc.assert(
    fc.property(fc.array(requestArb, { minLength: 1, maxLength: 8 }), fc.nat(50), (reqs, step) => {
      const frames = reqs.map(encodeRequest);
      const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
      let o = 0;
      for (const f of frames) {
        all.set(f, o);
        o += f.length;
      }
      const fr = new FrameReader();
      const got: Request[] = [];
      for (let i = 0; i < all.length; i += step + 1) {
        fr.push(all.subarray(i, i + step + 1));
        for (let b = fr.next(); b; b = fr.next()) got.push(decodeRequest(b));
      }
      assert.equal(got.length, reqs.length);
      assert.equal(fr.buffered, 0);
    }),
    { numRuns: 200 },
  );
});

Deno.test("the frame reader refuses oversized and empty frames", () => {
  const fr = new FrameReader();
  const big = new Uint8Array(8);
  new DataView(big.buffer).setUint32(0, MAX_FRAME + 1);
  fr.push(big);
  assert.throws(() => fr.next(), ProtocolError);
  const fr2 = new FrameReader();
  fr2.push(new Uint8Array(4));
  assert.throws(() => fr2.next(), /empty frame/);
});

Deno.test("large frames appended to one writer go out in buffers of their own size, not one buffer grown by doubling", () => {
  const w = new FrameWriter(4096);
  const reqs: Request[] = [];
  for (let i = 0; i < 24; i++) {
    const big = i % 3 !== 2;
    const req: Request = {
      op: Op.Put,
      id: i + 1,
      key: new TextEncoder().encode(`k${i}`),
      value: new Uint8Array(big ? 200_000 + i : 10).fill(i),
      clientId: 1n,
      seq: i + 1,
    };
    encodeRequestTo(w, req, req.id);
    reqs.push(req);
  }
  const total = w.length;
  const reader = new FrameReader();
  let chunks = 0, bytes = 0;
  while (w.length > 0) {
    const b = w.take();
    chunks++;
    bytes += b.length;
    // No buffer far larger than what it holds (big frames are not over-allocated 2x).
    const room = Math.max(b.length * 1.5, 512 * 1024);
    assert.ok(b.buffer.byteLength <= room, `${b.buffer.byteLength} for ${b.length}`);
    reader.push(b);
    w.recycle(b);
  }
  assert.equal(bytes, total);
  assert.ok(chunks >= 8, `${chunks} buffers for ${total} bytes`);
  for (let i = 0, f = reader.next(); i < reqs.length; i++, f = reader.next()) {
    assert.ok(f, `frame ${i}`);
    assert.deepEqual(encodeRequest(decodeRequest(f)), encodeRequest(reqs[i]));
  }
  assert.equal(reader.next(), undefined);
});

Deno.test("frames appended to one writer, taken in runs, decode as encoded alone; a failed one leaves no trace", () => {
  const tooBig: Request = {
    op: Op.Put,
    id: 9,
    key: new Uint8Array(1),
    value: new Uint8Array(MAX_FRAME),
    clientId: 1n,
    seq: 1,
  };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(requestArb, responseArb, fc.nat(4)), { minLength: 1, maxLength: 12 }),
      (items) => {
        const w = new FrameWriter(16);
        const reader = new FrameReader();
        const reqs: Request[] = [], ress: Response[] = [];
        const takeAll = () => {
          while (w.length > 0) {
            const b = w.take();
            reader.push(b);
            w.recycle(b);
          }
        };
        for (const [req, res, what] of items) {
          encodeRequestTo(w, req, req.id);
          reqs.push(req);
          if (what === 0) {
            assert.throws(() => encodeRequestTo(w, tooBig, tooBig.id), /frame_bytes|exceeds/);
          }
          encodeResponseTo(w, res);
          ress.push(res);
          if (what === 1) takeAll();
        }
        takeAll();
        const got: Array<Request | Response> = [];
        for (let i = 0, b = reader.next(); b; b = reader.next(), i++) {
          got.push(i % 2 === 0 ? decodeRequest(b) : decodeResponse(b));
        }
        assert.equal(got.length, 2 * items.length);
        for (let i = 0; i < items.length; i++) {
          assert.deepEqual(
            encodeRequest(got[2 * i] as Request),
            encodeRequest(reqs[i]),
          );
          assert.deepEqual(
            encodeResponse(got[2 * i + 1] as Response),
            encodeResponse(ress[i]),
          );
        }
        assert.equal(reader.buffered, 0);
        // A writer grown large by a refused frame is released.
        assert.ok(w.buf.length <= 1024 * 1024);
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("a decoded request owns its bytes: reusing the receive buffer changes nothing", () => {
  fc.assert(
    fc.property(requestArb, (req) => {
      const frame = encodeRequest(req);
      const body = frame.subarray(4);
      const got = decodeRequest(body);
      const want = encodeRequest(got);
      body.fill(0xee); // the connection's frame buffer is reused for the next bytes
      assert.deepEqual(encodeRequest(got), want);
    }),
    { numRuns: 200 },
  );
});
