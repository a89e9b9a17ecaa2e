// winston JSON logs with bound context; secrets never logged. Shared by the controller and the
// runner (pkg/common imports no other package of this repository).
import winston from "winston";

const SECRET_KEYS = /pass(word)?|secret|token|authorization|credential|accesskey/i;

/** Replaces values of secret-looking fields, at any depth, before a line is written. */
const redact = winston.format((info) => {
  const scrub = (v: unknown, depth: number): unknown => {
    if (depth > 5 || v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map((x) => scrub(x, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = SECRET_KEYS.test(k) ? "[REDACTED]" : scrub(x, depth + 1);
    return out;
  };
  for (const k of Object.keys(info)) {
    if (SECRET_KEYS.test(k)) (info as Record<string, unknown>)[k] = "[REDACTED]";
    else (info as Record<string, unknown>)[k] = scrub((info as Record<string, unknown>)[k], 0);
  }
  return info;
});

export interface LoggerOptions {
  level?: string;
  /** Extra context bound to every line (component, namespace, definition, ...). */
  defaultMeta?: Record<string, unknown>;
  /** Where lines go; defaults to stderr. Tests pass a stream to read them back. */
  stream?: NodeJS.WritableStream;
  silent?: boolean;
}

export function createLogger(opts: LoggerOptions = {}): winston.Logger {
  return winston.createLogger({
    level: opts.level ?? "info",
    defaultMeta: opts.defaultMeta,
    silent: opts.silent ?? false,
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), redact(), winston.format.json()),
    transports: [opts.stream ? new winston.transports.Stream({ stream: opts.stream }) : new winston.transports.Console({ stderrLevels: ["error", "warn", "info", "debug"] })],
  });
}
