import assert from "node:assert/strict";
import { crc32c, maskCrc, unmaskCrc } from "./crc32c.ts";
import { b, prng, randomBytes } from "./testutil_test.ts";

Deno.test("crc32c matches the standard check values", () => {
  assert.equal(crc32c(b("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c can be extended incrementally and over sub-ranges", () => {
  const r = prng(1);
  const data = randomBytes(r, 1000);
  for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) {
    const part = crc32c(data, cut, 1000 - cut, crc32c(data, 0, cut));
    assert.equal(part, crc32c(data));
  }
});

Deno.test("masking a crc is reversible and changes the value", () => {
  const r = prng(2);
  for (let i = 0; i < 100; i++) {
    const c = crc32c(randomBytes(r, 20));
    assert.notEqual(maskCrc(c), c);
    assert.equal(unmaskCrc(maskCrc(c)), c);
  }
});

Deno.test("crc32c's 16-byte fast path matches a bitwise reference at every alignment", () => {
  const ref = (d: Uint8Array) => {
    let c = ~0;
    for (const x of d) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return ~c >>> 0;
  };
  const r = prng(3);
  const data = randomBytes(r, 4300);
  for (let off = 0; off < 8; off++) {
    for (const len of [64, 65, 79, 80, 95, 127, 128, 200, 4225, 4300 - off]) {
      const view = data.subarray(off, off + len);
      assert.equal(crc32c(view), ref(view), `offset ${off} length ${len}`);
      assert.equal(crc32c(data, off, len), ref(view), `range at ${off} length ${len}`);
    }
  }
});
