/**
 * The OpenTelemetry SDK reports its own trouble through the API's `diag` logger, which drops
 * everything until a logger is set: spans dropped because the export queue is full (a collector
 * slower than the traffic), an `OTEL_*` variable it could not parse.
 * This logger puts the SDK's warnings and errors into the gateway's log, so an operator sees
 * them, without letting a collector outage flood it: each kind of message at most once a
 * minute, with the number held back in the next line.
 */
import type { DiagLogger } from "@opentelemetry/api";
import type { Logger } from "../log.js";
import { RepeatLimiter } from "./repeat-limiter.js";

export class DiagToLog implements DiagLogger {
  readonly #log: Logger;
  /** Kinds of message: the text with the numbers taken out. */
  readonly #limiter: RepeatLimiter;

  constructor(log: Logger, now: () => number = Date.now) {
    this.#log = log;
    this.#limiter = new RepeatLimiter({ now });
  }

  error(message: string, ...args: unknown[]): void {
    this.#report("error", message, args);
  }

  warn(message: string, ...args: unknown[]): void {
    this.#report("warn", message, args);
  }

  // Below warnings the SDK narrates its normal work; the gateway's log has no use for it.
  info(_message: string, ..._args: unknown[]): void {}

  debug(_message: string, ..._args: unknown[]): void {}

  verbose(_message: string, ..._args: unknown[]): void {}

  #report(level: "error" | "warn", message: string, args: unknown[]): void {
    const text = redact(String(message));
    const heldBack = this.#limiter.pass(text.replace(/\d+/g, "#"));
    if (heldBack === undefined) return;
    const fields: Record<string, unknown> = {};
    if (args.length > 0) fields.details = args.map((arg) => redact(describe(arg)));
    if (heldBack > 0) fields.repeated = heldBack;
    this.#log[level](fields, `tracing: ${text} (logged at most once a minute)`);
  }
}

function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * The SDK quotes what it could not use, and that can be a secret: an OTLP header's value (a
 * collector's API key) or a URL with credentials in it. Neither reaches the log.
 */
function redact(text: string): string {
  return text
    .replace(/(Header "[^"]*" has invalid value )\(.*\)/s, "$1([redacted])")
    .replace(/\/\/[^/@\s'"]*@/g, "//[redacted]@");
}
