import { watch } from "chokidar";
import { ConfigError, EXIT } from "../errors.js";
import { createLogger, flushLogs } from "../log.js";
import { Gateway } from "../runtime/gateway.js";
import { JwksPrimeError } from "../runtime/generation.js";

/** `mcpgw run`: the daemon in the foreground until SIGTERM/SIGINT. Resolves to the exit code. */
export async function run(configFile: string): Promise<number> {
  const log = createLogger();
  let gateway: Gateway;
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

  const watcher = gateway.generation.config.reload.watch ? watchConfig(gateway) : undefined;
  process.on("SIGHUP", () => void gateway.reload("SIGHUP"));

  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      void (async () => {
        await watcher?.close();
        await gateway.shutdown(signal);
        resolve(EXIT.ok);
      })();
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
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
  return {
    close: async () => {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}
