/**
 * `deno task compile`: builds standalone `gokv` binaries into dist/ for every release target.
 * `deno compile` downloads the runtime for each target; where that is impossible (no internet),
 * this prints one line saying so and exits 1 instead of a stack trace.
 *
 * @module
 */
const TARGETS: Array<[string, string]> = [
  ["x86_64-unknown-linux-gnu", "linux-x64"],
  ["aarch64-unknown-linux-gnu", "linux-arm64"],
  ["x86_64-apple-darwin", "macos-x64"],
  ["aarch64-apple-darwin", "macos-arm64"],
  ["x86_64-pc-windows-msvc", "windows-x64.exe"],
];

const only = Deno.args.find((a) => a.startsWith("--target="))?.slice("--target=".length);
await Deno.mkdir("dist", { recursive: true });
for (const [target, suffix] of TARGETS) {
  if (only && only !== target && only !== suffix.replace(/\.exe$/, "")) continue;
  const output = `dist/gokv-${suffix}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "-A", "--target", target, "--output", output, "main.ts"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr);
    const offline = /download|fetch|dns|connect|network|resolve|tcp|unreachable|timed out/i.test(
      err,
    );
    console.error(
      offline
        ? `compile: cannot download the Deno runtime for ${target} (no internet access here); run this task on a machine with internet or use the release workflow.`
        : `compile: deno compile failed for ${target}: ${err.trim().split("\n").at(-1)}`,
    );
    Deno.exit(1);
  }
  console.log(`built ${output}`);
}
