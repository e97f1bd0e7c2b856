import { watch } from "chokidar";
import { ConfigError, EXIT } from "../errors.js";
import { createLogger, flushLogs } from "../log.js";
import { Gateway } from "../runtime/gateway.js";
import { JwksPrimeError } from "../runtime/generation.js";

/** `mcpgw run`: the daemon in the foreground until SIGTERM/SIGINT. Resolves to the exit code. */
export async function run(configFile: string): Promise<number> {
  const log = createLogger();
  // Signal handlers come first: a SIGHUP's default action would kill a daemon that is still
  // starting (logrotate or an operator does not know), and a SIGTERM then must still drain.
  let gateway: Gateway | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  let stopRequested: (signal: NodeJS.Signals) => void = (signal) => {
    stopSignal = signal;
  };
  // While starting, the file is being read anyway: a SIGHUP then has nothing more to apply.
  process.on("SIGHUP", () => void gateway?.reload("SIGHUP"));
  process.once("SIGTERM", (signal) => stopRequested(signal));
  process.once("SIGINT", (signal) => stopRequested(signal));

  try {
    gateway = await Gateway.start({ configFile, log });
  } catch (error) {
    if (error instanceof ConfigError) {
      log.fatal({ problems: error.problems }, `invalid config: ${error.problems.join("; ")}`);
      await flushLogs(log);
      return EXIT.config;
    }
    if (error instanceof JwksPrimeError) {
      log.fatal({ err: error.cause }, error.message);
      await flushLogs(log);
      return EXIT.config;
    }
    log.fatal({ err: error }, `cannot start: ${(error as Error).message}`);
    await flushLogs(log);
    return EXIT.fatal;
  }

  const running = gateway;
  const watcher = running.generation.config.reload.watch ? watchConfig(running) : undefined;
  return new Promise((resolve) => {
    stopRequested = (signal) => {
      void (async () => {
        await watcher?.close();
        await running.shutdown(signal);
        resolve(EXIT.ok);
      })();
    };
    if (stopSignal) stopRequested(stopSignal);
  });
}

/**
 * `reload.watch: true`: reload when the file changes, after `reload.debounce` of quiet, so an
 * editor's several writes cause one reload. Whether to watch is read once at start.
 */
function watchConfig(gateway: Gateway) {
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(gateway.configFile, { ignoreInitial: true, atomic: true });
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () => void gateway.reload("file change"),
      gateway.generation.config.reload.debounce,
    );
  };
  watcher.on("change", schedule).on("add", schedule);
  watcher.on("error", (error) => gateway.log.error({ err: error }, "config watch failed"));
  // Changes are seen only from here on; the log line tells operators (and tests) when.
  watcher.once("ready", () =>
    gateway.log.info({ file: gateway.configFile }, "watching config file"),
  );
  return {
    close: async () => {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}
