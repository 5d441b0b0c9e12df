import assert from "node:assert/strict";
import {
  AuthGate,
  authorize,
  hashToken,
  OPEN_PRINCIPAL,
  parseTokens,
  PermissionDeniedError,
  type Principal,
  TokensFileError,
  UnauthenticatedError,
} from "./auth.ts";

const enc = new TextEncoder();
const b = (s: string) => enc.encode(s);

Deno.test("authorize: roles are ordered read < write < admin", () => {
  const reader: Principal = { name: "r", role: "read" };
  const writer: Principal = { name: "w", role: "write" };
  const admin: Principal = { name: "a", role: "admin" };
  for (const op of ["get", "scan", "watch", "snapshot_read", "status", "members"] as const) {
    authorize(reader, op);
  }
  for (const op of ["put", "delete", "txn", "atomic_write", "session"] as const) {
    assert.throws(() => authorize(reader, op), PermissionDeniedError);
    authorize(writer, op);
  }
  for (const op of ["member_change", "transfer", "snapshot_backup"] as const) {
    assert.throws(() => authorize(writer, op), PermissionDeniedError);
    authorize(admin, op);
  }
  assert.throws(() => authorize(undefined, "get"), UnauthenticatedError);
  authorize(OPEN_PRINCIPAL, "snapshot_backup");
});

Deno.test("authorize: a prefix-scoped token reaches only keys and ranges under its prefixes", () => {
  const p: Principal = { name: "app", role: "write", prefixes: [b("app/"), b("tmp/")] };
  authorize(p, "put", b("app/1"));
  authorize(p, "get", [b("app/x"), b("tmp/y")]);
  assert.throws(() => authorize(p, "put", b("ap")), PermissionDeniedError);
  assert.throws(() => authorize(p, "get", [b("app/x"), b("other")]), PermissionDeniedError);
  authorize(p, "scan", { prefix: b("app/") });
  authorize(p, "scan", { prefix: b("app/sub/") });
  authorize(p, "scan", { start: b("app/a"), end: b("app/z") });
  authorize(p, "scan", { start: b("app/"), end: b("app0") }); // "app0" is the prefix's end
  assert.throws(() => authorize(p, "scan", {}), PermissionDeniedError);
  assert.throws(() => authorize(p, "scan", { prefix: b("ap") }), PermissionDeniedError);
  assert.throws(() => authorize(p, "scan", { start: b("app/") }), PermissionDeniedError);
  assert.throws(
    () => authorize(p, "scan", { start: b("app/"), end: b("b") }),
    PermissionDeniedError,
  );
  // A prefix narrowed by start/end stays inside.
  authorize(p, "scan", { prefix: b("app/"), start: b("a"), end: b("z") });
  // Whole-database operations are refused to scoped tokens whatever their role.
  const scopedAdmin: Principal = { name: "sa", role: "admin", prefixes: [b("app/")] };
  assert.throws(() => authorize(scopedAdmin, "snapshot_backup"), PermissionDeniedError);
  authorize(scopedAdmin, "transfer");
});

Deno.test("tokens file: entries are validated; unknown or duplicate fields are refused", () => {
  const h = hashToken("t1");
  const ok = parseTokens(
    `tokens:\n  - { name: a, role: read, hash: "${h}", prefixes: ["x/"] }\n`,
  );
  assert.deepEqual(ok.get(h)?.prefixes, [b("x/")]);
  const bad = (text: string, re: RegExp) =>
    assert.throws(
      () => parseTokens(text, "t.yaml"),
      (e) => e instanceof TokensFileError && re.test(e.message),
    );
  bad("tokens: 3\n", /tokens:/);
  bad(`tokens:\n  - { name: a, role: root, hash: "${h}" }\n`, /role/);
  bad(`tokens:\n  - { name: a, role: read, hash: "abc" }\n`, /hash/);
  bad(`tokens:\n  - { name: a, role: read, hash: "${h}", rol: x }\n`, /unknown key "rol"/);
  bad(
    `tokens:\n  - { name: a, role: read, hash: "${h}" }\n  - { name: a, role: read, hash: "${
      hashToken("t2")
    }" }\n`,
    /duplicate "a"/,
  );
});

Deno.test("AuthGate: tokens authenticate, unknown ones are refused, reload swaps them; a broken file keeps the old ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/tokens.yaml`;
    await Deno.writeTextFile(
      file,
      `tokens:\n  - { name: a, role: read, hash: "${hashToken("one")}" }\n`,
    );
    const gate = await AuthGate.open({ tokensFile: file });
    assert.equal(gate.enabled, true);
    assert.equal(gate.authenticate("one")?.name, "a");
    assert.equal(gate.authenticate(undefined), undefined);
    assert.throws(() => gate.authenticate("two"), UnauthenticatedError);
    const req = (h?: string) =>
      new Request("http://x/", { headers: h ? { authorization: h } : {} });
    assert.equal(gate.authenticateHttp(req("Bearer one"))?.role, "read");
    assert.throws(() => gate.authenticateHttp(req("Basic b25lOg==")), UnauthenticatedError);
    await Deno.writeTextFile(
      file,
      `tokens:\n  - { name: b, role: admin, hash: "${hashToken("two")}" }\n`,
    );
    await gate.reload();
    assert.equal(gate.authenticate("two")?.role, "admin");
    assert.throws(() => gate.authenticate("one"), UnauthenticatedError, "revoked by the reload");
    await Deno.writeTextFile(file, "tokens: [broken\n");
    await assert.rejects(gate.reload(), TokensFileError);
    assert.equal(gate.authenticate("two")?.name, "b", "the previous tokens stay in force");
    // Without a file everything is open.
    assert.equal((await AuthGate.open()).authenticate(undefined), OPEN_PRINCIPAL);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
