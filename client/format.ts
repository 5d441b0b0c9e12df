/**
 * Output formatting of the client CLI: go-kv compatible result lines and etcdctl-style tables.
 *
 * @module
 */
import type { EndpointStatus, Member } from "./client.ts";

/** The line printed when set or delete succeeds (go-kv prints the nil result). */
export const SUCCESS_NIL = "✅ Success! Result: <nil>";
/** The line printed when get finds no value. */
export const SUCCESS_NOT_FOUND = "✅ Success! Result: key not found";
/** The line printed (on stdout) when a command fails; the reason goes to stderr. */
export const FAILED = "❌ Failed to execute command.";

/** The line printed when get finds `value`. */
export function successValue(value: string): string {
  return `✅ Success! Value: ${value}`;
}

/** A generic success line with a result (used by member/leader commands). */
export function successResult(result: string): string {
  return `✅ Success! Result: ${result}`;
}

/** Renders rows as an ASCII table with centered headers, like `etcdctl -w table`. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = "+" + widths.map((w) => "-".repeat(w + 2)).join("+") + "+";
  const center = (s: string, w: number) => {
    const left = Math.floor((w - s.length) / 2);
    return " ".repeat(left) + s + " ".repeat(w - s.length - left);
  };
  const out = [line];
  out.push("| " + headers.map((h, i) => center(h, widths[i])).join(" | ") + " |");
  out.push(line);
  for (const r of rows) {
    out.push("| " + widths.map((w, i) => (r[i] ?? "").padEnd(w)).join(" | ") + " |");
  }
  out.push(line);
  return out.join("\n");
}

/** Human-readable byte size ("1.5 MB"). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "-";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function storageBytes(storage: Record<string, unknown> | undefined): number {
  if (!storage) return NaN;
  const lsm = storage.lsm as { levels?: { bytes?: number }[]; memtableBytes?: number } | undefined;
  if (lsm && Array.isArray(lsm.levels)) {
    return lsm.levels.reduce((n, l) => n + (l.bytes ?? 0), 0) + (lsm.memtableBytes ?? 0);
  }
  for (const k of ["dbSize", "sizeBytes", "totalBytes", "bytes", "diskBytes"]) {
    const v = storage[k];
    if (typeof v === "number") return v;
  }
  return NaN;
}

/** The `gokv status` table: one row per endpoint. */
export function formatStatusTable(rows: EndpointStatus[]): string {
  const headers = [
    "ENDPOINT",
    "ID",
    "ROLE",
    "IS LEADER",
    "TERM",
    "LEADER",
    "COMMIT INDEX",
    "APPLIED INDEX",
    "SNAPSHOT INDEX",
    "LOG SIZE",
    "DB SIZE",
    "ERRORS",
  ];
  const body = rows.map((r) => {
    const s = r.status;
    if (!s) return [r.endpoint, "", "", "", "", "", "", "", "", "", "", r.error?.message ?? ""];
    return [
      r.endpoint,
      String(s.id),
      s.role,
      String(s.role === "leader"),
      String(s.term),
      String(s.leader),
      String(s.commitIndex),
      String(s.appliedIndex),
      String(s.snapshotIndex),
      String(s.logSize),
      formatBytes(storageBytes(s.storage)),
      "",
    ];
  });
  return formatTable(headers, body);
}

/** The `gokv member list` table. */
export function formatMembersTable(members: Member[], leaderId = 0): string {
  const rows = [...members].sort((a, b) => a.id - b.id).map((m) => [
    String(m.id),
    m.learner ? "learner" : "voter",
    String(m.id === leaderId),
    m.peer,
    m.client,
    m.http,
  ]);
  return formatTable(["ID", "ROLE", "IS LEADER", "PEER ADDR", "CLIENT ADDR", "HTTP ADDR"], rows);
}

/** A text progress bar: `[#####.....] 50% label`. */
export function progressBar(fraction: number, width = 30, label = ""): string {
  const f = Math.max(0, Math.min(1, fraction));
  const done = Math.round(f * width);
  return `[${"#".repeat(done)}${".".repeat(width - done)}] ${
    String(Math.floor(f * 100)).padStart(3)
  }%${label ? " " + label : ""}`;
}
