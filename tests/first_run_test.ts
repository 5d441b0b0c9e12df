/**
 * A fresh clone's first `deno task cluster` / `deno task test` prints no npm warning box: every
 * installed npm package that declares a lifecycle script is decided on (allowScripts) in deno.json,
 * and the benchmark-only peers stay out of the main import map.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LIFECYCLE = ["preinstall", "install", "postinstall"];

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(Deno.readTextFileSync(path));
}

Deno.test("every npm package with a lifecycle script is listed in allowScripts", () => {
  const config = readJson(join(ROOT, "deno.json"));
  const allow = config.allowScripts as { allow?: string[]; deny?: string[] } | undefined;
  const decided = new Set([...(allow?.allow ?? []), ...(allow?.deny ?? [])]);
  const store = join(ROOT, "node_modules", ".deno");
  let seen = 0;
  const undecided: string[] = [];
  for (const dir of Deno.readDirSync(store)) {
    if (!dir.isDirectory || !/@\d/.test(dir.name)) continue;
    const at = dir.name.lastIndexOf("@");
    const name = dir.name.slice(0, at).replace("+", "/");
    let pkg: Record<string, unknown>;
    try {
      pkg = readJson(join(store, dir.name, "node_modules", name, "package.json"));
    } catch {
      continue;
    }
    seen++;
    const scripts = (pkg.scripts ?? {}) as Record<string, string>;
    if (LIFECYCLE.some((s) => s in scripts) && !decided.has(`npm:${name}`)) {
      undecided.push(`npm:${name}`);
    }
  }
  assert.ok(seen > 5, `read ${seen} packages from ${store}`);
  assert.deepEqual(undecided, [], "add these to allowScripts in deno.json (allow or deny)");
});

Deno.test("benchmark-only npm packages are not in the main import map", () => {
  const imports = readJson(join(ROOT, "deno.json")).imports as Record<string, string>;
  const benchImports = readJson(join(ROOT, "bench", "deno.json")).imports as Record<string, string>;
  for (const name of ["classic-level", "etcd3"]) {
    assert.ok(!(name in imports), `${name} is in the root import map`);
    assert.ok(name in benchImports, `${name} is missing from bench/deno.json`);
  }
});
