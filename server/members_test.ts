import assert from "node:assert/strict";
import fc from "fast-check";
import { join } from "node:path";
import {
  AddressBook,
  decodeMemberContext,
  encodeMemberContext,
  MemberContextError,
} from "./members.ts";

Deno.test("member contexts round-trip and reject malformed bytes with a typed error", () => {
  fc.assert(
    fc.property(
      fc.record({
        id: fc.integer({ min: 0, max: 0xffffffff }),
        peer: fc.string({ maxLength: 40 }),
        client: fc.string({ maxLength: 40 }),
        http: fc.string({ maxLength: 40 }),
      }),
      (m) => {
        assert.deepEqual(decodeMemberContext(encodeMemberContext(m)), structuredClone(m));
      },
    ),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      try {
        decodeMemberContext(b);
      } catch (e) {
        assert.ok(e instanceof MemberContextError);
      }
    }),
    { numRuns: 1000 },
  );
});

Deno.test("the address book keeps config addresses and persists learned ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const configured = [{ id: 1, peer: "h:1", client: "h:2", http: "h:3" }];
    const book = new AddressBook(configured, dir);
    book.learn({ id: 1, peer: "other:1", client: "other:2", http: "other:3" });
    book.learn({ id: 4, peer: "n4:1", client: "n4:2", http: "n4:3" });
    assert.equal(book.get(1)!.peer, "h:1", "config addresses win");
    assert.ok(await Deno.stat(join(dir, "members.json")));
    const again = new AddressBook(configured, dir);
    await again.load();
    assert.deepEqual(again.all().map((m) => m.id), [1, 4]);
    assert.equal(again.get(4)!.client, "n4:2");
    assert.equal(again.get(1)!.peer, "h:1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
