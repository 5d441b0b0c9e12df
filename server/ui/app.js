// gokv web console: plain ES module, no framework, no CDN. Served by every node at /ui.
// Talks to the node it was loaded from: /v1/cluster (every member's status, gathered by the
// node), /metrics (Prometheus text), /v1/kv (scan, set, delete), /v1/members, /v1/leader/transfer
// and /v1/watch (Server-Sent Events, read with fetch so the token stays in a header).
// The bearer token is kept in sessionStorage (this tab only) and sent as a header, never in a URL.

const TOKEN_KEY = "gokv.token";
const POLL_MS = 1000;
const POINTS = 60;

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};

function headers(extra = {}) {
  const h = { "x-gokv-client": "console", ...extra };
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (t) h.authorization = `Bearer ${t}`;
  return h;
}

class ApiError extends Error {}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: headers(init.headers) });
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { message: text };
  }
  if (!res.ok) {
    throw new ApiError(`${res.status} ${body.error ?? ""} ${body.message ?? ""}`.trim());
  }
  return body;
}

function showError(msg) {
  const e = $("#error");
  e.textContent = msg ?? "";
  e.hidden = !msg;
}

// ---- tabs and token -------------------------------------------------------------------------

for (const b of document.querySelectorAll("nav button")) {
  b.addEventListener("click", () => {
    for (const o of document.querySelectorAll("nav button")) o.classList.toggle("active", o === b);
    for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== b.dataset.tab;
  });
}
$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("#token").value.trim();
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  $("#token").value = "";
  refresh();
});
$("#token-clear").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  refresh();
});

// ---- cluster overview -----------------------------------------------------------------------

async function memberAction(what, fn) {
  if (!confirm(what)) return;
  try {
    await fn();
    showError("");
  } catch (e) {
    showError(`${what}: ${e.message}`);
  }
  refresh();
}

function renderMembers(view) {
  const tbody = $("#members tbody");
  const leaderCommit = view.members.find((m) => m.id === view.leader)?.status?.commitIndex;
  tbody.replaceChildren(...view.members.map((m) => {
    const s = m.status;
    const role = s ? s.role : "unreachable";
    const isLeader = m.id === view.leader && s?.role === "leader";
    const lag = s && leaderCommit !== undefined ? Math.max(0, leaderCommit - s.appliedIndex) : "";
    const actions = el("td", { class: "actions" });
    if (!m.learner && !isLeader && s) {
      actions.append(el("button", {
        onclick: () =>
          memberAction(`Transfer leadership to node ${m.id}?`, () =>
            api(`/v1/leader/transfer`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ id: m.id }),
            })),
      }, "make leader"));
    }
    actions.append(el("button", {
      class: "danger",
      onclick: () =>
        memberAction(
          `Remove node ${m.id} from the cluster?`,
          () => api(`/v1/members/${m.id}`, { method: "DELETE" }),
        ),
    }, "remove"));
    return el(
      "tr",
      {
        "data-id": m.id,
        "data-role": role,
        "data-health": m.reachable ? "up" : "down",
        class: isLeader ? "leader" : "",
      },
      el("td", {}, m.id, isLeader ? " ★" : "", m.id === view.self ? " (this node)" : ""),
      el("td", { class: "role" }, m.learner && s ? `${role} (learner)` : role),
      el(
        "td",
        { class: m.reachable ? "ok" : "bad" },
        m.reachable ? "up" : `down: ${m.error ?? ""}`,
      ),
      el("td", {}, s?.term ?? ""),
      el("td", {}, s?.commitIndex ?? ""),
      el("td", {}, s?.appliedIndex ?? ""),
      el("td", {}, lag),
      el("td", {}, s?.logSize ?? ""),
      el("td", { class: "muted" }, `peer ${m.peer} client ${m.client} http ${m.http}`),
      actions,
    );
  }));
  const leader = view.members.find((m) => m.id === view.leader);
  $("#conn").textContent = `node ${view.self} · ${view.members.length} members · leader ${
    leader ? leader.id : "none"
  }`;
  document.body.dataset.leader = String(view.leader ?? 0);
}

$("#add-member").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const m = {
    id: Number(f.get("id")),
    peer: f.get("peer"),
    client: f.get("client"),
    http: f.get("http"),
  };
  memberAction(`Add node ${m.id} as a learner?`, () =>
    api("/v1/members", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(m),
    }));
});

// ---- metrics charts -------------------------------------------------------------------------

/** Parses Prometheus text into samples: [{name, labels, value}]. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (samples, name, pred = () => true) =>
  samples.filter((s) => s.name === name && pred(s.labels)).reduce((a, s) => a + s.value, 0);

/** Cumulative histogram buckets by `le` (summed over other labels). */
function buckets(samples, family) {
  const b = new Map();
  for (const s of samples) {
    if (s.name !== `${family}_bucket`) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    b.set(le, (b.get(le) ?? 0) + s.value);
  }
  return b;
}

/** The q-quantile (seconds) of the observations between two bucket snapshots. */
function quantile(prev, cur, q) {
  const les = [...cur.keys()].sort((a, b) => a - b);
  const total = (cur.get(Infinity) ?? 0) - (prev.get(Infinity) ?? 0);
  if (total <= 0) return undefined;
  for (const le of les) {
    if ((cur.get(le) ?? 0) - (prev.get(le) ?? 0) >= q * total) {
      return le === Infinity ? les[les.length - 2] : le;
    }
  }
  return undefined;
}

const series = { tput: [], p99: [], fsync: [], log: [] };
let last;

function plot(id, values, fmt) {
  const svg = $(`#c-${id}`);
  const vals = values.filter((v) => v !== undefined && Number.isFinite(v));
  const max = Math.max(1e-9, ...vals);
  const pts = values.map((v, i) =>
    v === undefined ? null : `${(i * 300) / (POINTS - 1)},${78 - (v / max) * 74}`
  ).filter(Boolean).join(" ");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts);
  svg.append(line);
  const lastV = values[values.length - 1];
  $(`#v-${id}`).textContent = lastV === undefined ? "–" : fmt(lastV);
}

function push(id, v) {
  series[id].push(v);
  if (series[id].length > POINTS) series[id].shift();
}

async function refreshMetrics() {
  const res = await fetch("/metrics", { headers: headers() });
  if (!res.ok) return;
  const samples = parseMetrics(await res.text());
  const now = performance.now();
  const cur = {
    t: now,
    ops: sum(samples, "gokv_applies_total") + sum(samples, "gokv_reads_total"),
    req: buckets(samples, "gokv_request_seconds"),
    fsyncSum: sum(samples, "gokv_fsync_seconds_sum"),
    fsyncCount: sum(samples, "gokv_fsync_seconds_count"),
    log: sum(samples, "gokv_raft_log_entries"),
  };
  if (last) {
    const dt = (cur.t - last.t) / 1000;
    push("tput", Math.max(0, (cur.ops - last.ops) / dt));
    push("p99", quantile(last.req, cur.req, 0.99));
    const n = cur.fsyncCount - last.fsyncCount;
    push("fsync", n > 0 ? (cur.fsyncSum - last.fsyncSum) / n : undefined);
    push("log", cur.log);
    plot("tput", series.tput, (v) => `${Math.round(v)} ops/s`);
    plot("p99", series.p99, (v) => `${(v * 1000).toFixed(1)} ms`);
    plot("fsync", series.fsync, (v) => `${(v * 1000).toFixed(2)} ms`);
    plot("log", series.log, (v) => `${Math.round(v)}`);
  }
  last = cur;
}

async function refresh() {
  try {
    renderMembers(await api("/v1/cluster"));
    showError("");
  } catch (e) {
    showError(`cluster status: ${e.message}`);
    $("#conn").textContent = "this node is not answering";
  }
  refreshMetrics().catch(() => {});
}

// ---- key browser ----------------------------------------------------------------------------

const dec = new TextDecoder("utf-8", { fatal: true });

function bytesOf(entry, field) {
  if (entry[field] !== undefined) return new TextEncoder().encode(entry[field]);
  const b64 = entry[`${field}Base64`];
  if (b64 === undefined) return undefined;
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function show(bytes, view) {
  if (bytes === undefined) return "";
  if (view === "hex") return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  let text;
  try {
    text = dec.decode(bytes);
  } catch {
    return `(${bytes.length} bytes, not UTF-8: use hex)`;
  }
  if (view === "json") {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return `(not JSON) ${text}`;
    }
  }
  return text;
}

/** A refused or failed key-browser action, shown above the table (e.g. a read-only token). */
function kvStatus(msg) {
  const e = $("#kv-status");
  e.textContent = msg;
  e.hidden = !msg;
}

let page = { prefix: "", limit: 50, next: undefined };

function keyPath(entry) {
  return entry.key !== undefined
    ? `/v1/kv/${encodeURIComponent(entry.key)}`
    : `/v1/kv?key_b64=${encodeURIComponent(entry.keyBase64)}`;
}

let scans = 0;

async function scan(cursor) {
  const q = new URLSearchParams({ prefix: page.prefix, limit: String(page.limit) });
  if (cursor) q.set("cursor", cursor);
  const view = $("#view").value;
  const mine = ++scans;
  page.cursor = cursor; // the page shown (a watch event re-reads it)
  try {
    const body = await api(`/v1/kv?${q}`);
    if (mine !== scans) return; // a later scan started: its answer is the one to show
    page.next = body.next;
    $("#next-page").disabled = !body.next;
    $("#kvs tbody").replaceChildren(...body.kvs.map((kv) =>
      el(
        "tr",
        { "data-key": kv.key ?? kv.keyBase64 },
        el("td", {}, kv.key ?? `(base64) ${kv.keyBase64}`),
        el("td", {}, el("pre", {}, show(bytesOf(kv, "value"), view))),
        el("td", { class: "mono" }, kv.versionstamp ?? ""),
        el(
          "td",
          {},
          el("button", {
            class: "danger",
            onclick: async () => {
              if (!confirm(`Delete key "${kv.key ?? kv.keyBase64}"?`)) return;
              try {
                await api(keyPath(kv), { method: "DELETE" });
                kvStatus("");
              } catch (e) {
                kvStatus(`delete refused: ${e.message}`);
                return;
              }
              scan();
            },
          }, "delete"),
        ),
      )
    ));
  } catch (e) {
    $("#kvs tbody").replaceChildren(el("tr", {}, el("td", { colspan: 4 }, `scan: ${e.message}`)));
  }
}

$("#scan").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  page = { prefix: String(f.get("prefix") ?? ""), limit: Number(f.get("limit")) || 50 };
  scan();
});
$("#next-page").addEventListener("click", () => page.next && scan(page.next));
$("#view").addEventListener("change", () => scan());

$("#set").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const key = String(f.get("key"));
  const value = String(f.get("value") ?? "");
  if (!confirm(`Set "${key}" to "${value}"?`)) return;
  try {
    await api(`/v1/kv/${encodeURIComponent(key)}`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: new TextEncoder().encode(value),
    });
    ev.target.reset();
    kvStatus("");
  } catch (e) {
    kvStatus(`set refused: ${e.message}`);
    return;
  }
  scan();
});

// Watch: `GET /v1/watch` Server-Sent Events, read through fetch (EventSource cannot send the
// token header). Events: `initial` (the prefix's entries at a versionstamp), `change` (one commit's
// changes, value null = deleted), `error` (e.g. watch_compacted); `: keepalive` comments. Every
// event's id is its versionstamp: after a dropped stream (the node restarted, the network blinked)
// the console reconnects with `Last-Event-ID` and misses nothing; when that node's history no
// longer reaches back (410 / watch_compacted) it starts over from the current state.
let watching;
let lastEventId;
let watchedPrefix;

/** One entry of a watch event; `at` adds its versionstamp (a change line starts with it). */
function entryText(e, at) {
  const key = e.key ?? `(base64) ${e.keyBase64}`;
  if (e.versionstamp === null || (e.value === null && e.valueBase64 === undefined)) {
    return `${key} deleted`;
  }
  const value = show(bytesOf(e, "value"), $("#view").value);
  const kind = e.encoding && e.encoding !== "bytes" ? ` (${e.encoding})` : "";
  return `${key} = ${value}${kind}${at ? `  @${e.versionstamp}` : ""}`;
}

function logEvent(line) {
  const out = $("#events");
  out.textContent = `${line}\n${out.textContent}`.slice(0, 20000);
}

/** Handles one SSE block; returns false when the stream must start over. */
function onWatchEvent(block) {
  let event = "message";
  let id;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // keepalive comment
    const c = line.indexOf(":");
    const field = c < 0 ? line : line.slice(0, c);
    const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return true;
  const body = JSON.parse(data.join("\n"));
  if (id) lastEventId = id;
  if (event === "initial") {
    logEvent(`initial state at ${body.versionstamp}: ${body.entries.length} keys`);
    for (const e of body.entries) logEvent(`  ${entryText(e, true)}`);
  } else if (event === "change") {
    for (const e of body.changes) logEvent(`${body.versionstamp} ${entryText(e, false)}`);
    // The table shows the same prefix: keep it current.
    if (page.prefix === watchedPrefix) scan(page.cursor);
  } else if (event === "error") {
    logEvent(`watch: ${body.error}: ${body.message ?? ""}`);
    if (body.error === "watch_compacted") lastEventId = undefined;
    return false;
  }
  return true;
}

async function watchOnce(prefix, signal) {
  const h = { accept: "text/event-stream" };
  if (lastEventId) h["last-event-id"] = lastEventId;
  const res = await fetch(`/v1/watch?prefix=${encodeURIComponent(prefix)}`, {
    headers: headers(h),
    signal,
  });
  if (!res.ok) {
    let body = {};
    try {
      body = await res.json();
    } catch { /* not JSON */ }
    if (res.status === 410) lastEventId = undefined; // history compacted: start over
    throw new ApiError(`${res.status} ${body.error ?? ""} ${body.message ?? ""}`.trim());
  }
  $("#watch-state").textContent = `watching "${prefix}" live`;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!onWatchEvent(block)) return;
    }
  }
}

$("#watch").addEventListener("click", async () => {
  if (watching) {
    watching.abort();
    watching = undefined;
    $("#watch").textContent = "watch prefix";
    $("#watch-state").textContent = "";
    return;
  }
  const ac = new AbortController();
  watching = ac;
  lastEventId = undefined;
  $("#watch").textContent = "stop watching";
  $("#events").hidden = false;
  $("#events").textContent = "";
  const prefix = $("#prefix").value;
  watchedPrefix = prefix;
  while (!ac.signal.aborted) {
    try {
      await watchOnce(prefix, ac.signal);
    } catch (e) {
      if (ac.signal.aborted) break;
      logEvent(`watch: ${e.message}`);
      // A refusal (bad token, no permission) does not heal by retrying.
      if (e instanceof ApiError && /^(400|401|403|404|405) /.test(e.message)) {
        watching = undefined;
        $("#watch").textContent = "watch prefix";
        $("#watch-state").textContent = "";
        return;
      }
    }
    if (ac.signal.aborted) break;
    $("#watch-state").textContent = `reconnecting${lastEventId ? ` after ${lastEventId}` : ""}…`;
    await new Promise((r) => setTimeout(r, 1000));
  }
});

refresh();
setInterval(refresh, POLL_MS);
