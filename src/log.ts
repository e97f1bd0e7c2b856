/** The daemon's JSON logs on stdout (pino). */
import { type DestinationStream, type LevelWithSilent, type Logger, pino } from "pino";

export type { Logger };

/**
 * Logs go to stdout through an asynchronous destination so that logging never blocks the
 * request path; `flushLogs` drains it before exit. Redaction is a second line of defence:
 * no code logs a credential, and these paths make sure a future mistake does not either.
 */
export function createLogger(
  level: LevelWithSilent = "info",
  destination: DestinationStream = pino.destination({ dest: 1, sync: false, minLength: 0 }),
): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          "authorization",
          "*.authorization",
          "headers.cookie",
          "*.headers.cookie",
          "token",
          "key",
        ],
        censor: "[redacted]",
      },
    },
    destination,
  );
}

export function flushLogs(log: Logger): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}
