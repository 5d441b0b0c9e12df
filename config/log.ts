/**
 * The structured logger: leveled lines in text (for terminals) or JSON (for machines), each
 * carrying the node id when there is one.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ level: "info", format: "json", nodeId: 1, write: () => {} });
 * log.info("started", { port: 7001 });
 * ```
 *
 * @module
 */
import type { LogFields, Logger } from "../raft/logger.ts";

export type { LogFields, Logger };

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;

/** A log level name. */
export type LogLevel = keyof typeof LEVELS;

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** The lowest level printed (default info). */
  level?: LogLevel;
  /** `text` (default) or `json`. */
  format?: "text" | "json";
  /** The node id stamped on every line. */
  nodeId?: number;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
  /** The clock (default: Date.now). */
  now?: () => number;
}

const encoder = new TextEncoder();

function defaultWrite(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr closed: nothing sensible to do.
  }
}

function textValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === "bigint") return v.toString();
  return JSON.stringify(v) ?? String(v);
}

/** Creates a {@link Logger}. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const min = LEVELS[opts.level ?? "info"];
  const json = opts.format === "json";
  const write = opts.write ?? defaultWrite;
  const now = opts.now ?? Date.now;
  const node = opts.nodeId;
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (LEVELS[level] < min) return;
    const ts = new Date(now()).toISOString();
    if (json) {
      const rec: Record<string, unknown> = { ts, level, msg };
      if (node !== undefined) rec.node = node;
      if (fields) {
        for (const [k, v] of Object.entries(fields)) {
          rec[k] = v instanceof Error ? v.message : typeof v === "bigint" ? v.toString() : v;
        }
      }
      write(JSON.stringify(rec));
    } else {
      let line = `${ts} ${level.toUpperCase().padEnd(5)}${
        node !== undefined ? ` [node ${node}]` : ""
      } ${msg}`;
      if (fields) {
        for (const [k, v] of Object.entries(fields)) line += ` ${k}=${textValue(v)}`;
      }
      write(line);
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
