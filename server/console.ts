/**
 * The web console: its static files at `/ui` (embedded, see scripts/build_ui.ts) and
 * `GET /v1/cluster`, the view it polls — every member of the configuration with its addresses and
 * its own `/v1/status`, gathered by the node serving the console (so the browser talks to one
 * origin only).
 *
 * @module
 */
import { UI_ASSETS } from "./ui_assets.ts";
import type { KvService } from "./service.ts";

/** How long the node waits for another member's status (it is shown as down after that). */
export const MEMBER_STATUS_TIMEOUT_MS = 700;

/** One member in the cluster view. */
export interface ClusterMemberView {
  /** Node id. */
  id: number;
  /** True for a learner. */
  learner: boolean;
  /** Peer address. */
  peer: string;
  /** Client (binary protocol) address. */
  client: string;
  /** HTTP address. */
  http: string;
  /** Whether its status could be read. */
  reachable: boolean;
  /** Its `/v1/status` (when reachable). */
  status?: Record<string, unknown>;
  /** Why it is not reachable. */
  error?: string;
}

/** The answer of `GET /v1/cluster`. */
export interface ClusterView {
  /** The node that answered. */
  self: number;
  /** The leader it knows (0: none). */
  leader: number;
  /** Every member of the configuration, by id. */
  members: ClusterMemberView[];
}

/** Options of {@link clusterView}. */
export interface ClusterViewOptions {
  /** fetch used to ask the other members (tests inject one). */
  fetch?: typeof fetch;
  /** The members' URL scheme (default "http"). */
  scheme?: "http" | "https";
  /** Headers passed on to the other members (the caller's Authorization). */
  headers?: HeadersInit;
  /** Per-member timeout (default {@link MEMBER_STATUS_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** Gathers every member's status, asking the others in parallel. */
export async function clusterView(
  service: KvService,
  opts: ClusterViewOptions = {},
): Promise<ClusterView> {
  const doFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? MEMBER_STATUS_TIMEOUT_MS;
  const members = await Promise.all(
    service.members().map(async (m) => {
      const view: ClusterMemberView = { ...m, reachable: false };
      if (m.id === service.id) {
        view.status = service.status();
        view.reachable = true;
        return view;
      }
      if (!m.http) {
        view.error = "no HTTP address known";
        return view;
      }
      try {
        const res = await doFetch(`${opts.scheme ?? "http"}://${m.http}/v1/status`, {
          headers: opts.headers,
          signal: AbortSignal.timeout(timeoutMs),
        });
        if (!res.ok) {
          await res.body?.cancel();
          view.error = `HTTP ${res.status}`;
        } else {
          view.status = await res.json();
          view.reachable = true;
        }
      } catch (e) {
        view.error = (e as Error).name === "TimeoutError"
          ? `no answer in ${timeoutMs} ms`
          : "unreachable";
      }
      return view;
    }),
  );
  return { self: service.id, leader: service.leaderId(), members };
}

const SECURITY_HEADERS = {
  // The console loads only its own files and talks only to its own origin.
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/** Serves a console file for `GET /ui`, `/ui/` and `/ui/<file>`; undefined for other paths. */
export function consoleAsset(path: string): Response | undefined {
  if (path !== "/ui" && !path.startsWith("/ui/")) return undefined;
  const asset = UI_ASSETS[path === "/ui" || path === "/ui/" ? "/ui/index.html" : path];
  if (!asset) {
    return new Response("not found\n", { status: 404, headers: SECURITY_HEADERS });
  }
  return new Response(asset.body, {
    headers: { ...SECURITY_HEADERS, "content-type": asset.contentType },
  });
}
