import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UI_ASSETS } from "./ui_assets.ts";
import { clusterView, consoleAsset } from "./console.ts";
import { startFakeNode } from "./testing.ts";

const UI_DIR = fileURLToPath(new URL("./ui/", import.meta.url));

Deno.test("the embedded console is the current server/ui (run `deno task build:ui` if not)", () => {
  const files = [...Deno.readDirSync(UI_DIR)].filter((e) => e.isFile).map((e) => e.name).sort();
  assert.deepEqual(Object.keys(UI_ASSETS).sort(), files.map((f) => `/ui/${f}`));
  for (const f of files) {
    assert.equal(UI_ASSETS[`/ui/${f}`].body, Deno.readTextFileSync(join(UI_DIR, f)), f);
  }
});

Deno.test("/ui serves the page with a strict content security policy; unknown files are 404", async () => {
  for (const path of ["/ui", "/ui/"]) {
    const res = consoleAsset(path)!;
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/html/);
    assert.match(res.headers.get("content-security-policy")!, /script-src 'self'/);
    assert.match(await res.text(), /<script type="module" src="\/ui\/app.js">/);
  }
  assert.match(consoleAsset("/ui/app.js")!.headers.get("content-type")!, /javascript/);
  const missing = consoleAsset("/ui/../../etc/passwd")!;
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  assert.equal(consoleAsset("/v1/status"), undefined);
});

Deno.test("the cluster view reports each member's status and marks unreachable ones", async () => {
  const members = [
    { id: 1, peer: "127.0.0.1:1", client: "127.0.0.1:2", http: "127.0.0.1:3" },
    { id: 2, peer: "127.0.0.1:4", client: "127.0.0.1:5", http: "127.0.0.1:6" },
    { id: 3, peer: "127.0.0.1:7", client: "127.0.0.1:8", http: "127.0.0.1:9" },
  ];
  const n = await startFakeNode(1, { voters: [1, 2, 3], members });
  try {
    const asked: string[] = [];
    const fakeFetch = ((url: string, init?: RequestInit) => {
      asked.push(`${url} ${new Headers(init?.headers).get("authorization")}`);
      if (url.includes("127.0.0.1:6")) {
        return Promise.resolve(Response.json({ id: 2, role: "follower", term: 1 }));
      }
      return Promise.reject(new TypeError("connection refused"));
    }) as typeof fetch;
    const view = await clusterView(n.service, {
      fetch: fakeFetch,
      headers: { authorization: "Bearer t" },
    });
    assert.equal(view.self, 1);
    assert.deepEqual(view.members.map((m) => [m.id, m.reachable]), [[1, true], [2, true], [
      3,
      false,
    ]]);
    assert.equal(view.members[0].status?.id, 1);
    assert.equal(view.members[1].status?.role, "follower");
    assert.equal(view.members[2].error, "unreachable");
    assert.deepEqual(asked.sort(), [
      "http://127.0.0.1:6/v1/status Bearer t",
      "http://127.0.0.1:9/v1/status Bearer t",
    ]);
  } finally {
    await n.close();
  }
});
