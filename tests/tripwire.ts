/**
 * Runs `gokv` (main.ts) with an unhandled-rejection tripwire: any promise rejection no code
 * handled prints `UNHANDLED REJECTION: <reason>` and exits with code 70, so a multi-process test
 * that starts its nodes through this file (TestCluster `tripwire: true`) fails loudly on one.
 *
 * @module
 */
/** The exit code of a tripped wire. */
export const TRIPWIRE_EXIT = 70;

globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  const r = e.reason as Error | undefined;
  console.error(`UNHANDLED REJECTION: ${r?.stack ?? String(r)}`);
  Deno.exit(TRIPWIRE_EXIT);
});

const { main } = await import("../main.ts");
Deno.exit(await main(Deno.args));
