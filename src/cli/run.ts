import { type FSWatcher, watch } from "node:fs";
import { readlink, realpath } from "node:fs/promises";
import path from "node:path";
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
  process.on("SIGUSR1", () => void gateway?.reopenAuditLog("SIGUSR1"));
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
        // "stopped" is the last line: an export still hanging after the shutdown gave up on it
        // (a collector that accepts and never answers) must not log after it.
        log.level = "silent";
        resolve(EXIT.ok);
      })();
    };
    if (stopSignal) stopRequested(stopSignal);
  });
}

/**
 * `reload.watch: true`: reload when the file changes, after `reload.debounce` of quiet, so an
 * editor's several writes cause one reload. Whether to watch is read once at start.
 *
 * The file's directory is watched, not the file: editors replace a file by renaming a new one
 * over it, and a Kubernetes ConfigMap volume swaps a symlink (`mcpgw.yaml -> ..data/mcpgw.yaml`,
 * `..data` replaced with `mv -T`), so the file itself never changes. Events for the file's
 * name, and for the first component of its symlink target (`..data`), schedule a reload;
 * others (the audit file beside it) are ignored. When the file is a symlink into another
 * directory, the directory of its target is watched too, for edits made there.
 */
function watchConfig(gateway: Gateway) {
  const file = path.resolve(gateway.configFile);
  const directory = path.dirname(file);
  let timer: NodeJS.Timeout | undefined;
  let names = new Set<string>([path.basename(file)]);
  let target: { file: string; watcher: FSWatcher } | undefined;
  let closed = false;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      void learn().then(() => gateway.reload("file change"));
    }, gateway.generation.config.reload.debounce);
  };
  // What to listen for follows the symlinks as they are now; called again before each reload.
  const learn = async () => {
    const link = await readlink(file).catch(() => undefined);
    const first = link && !path.isAbsolute(link) ? link.split(/[\\/]/)[0] : undefined;
    names = new Set([path.basename(file), ...(first && first !== ".." ? [first] : [])]);
    const real = await realpath(file).catch(() => file);
    if (closed || real === target?.file) return;
    target?.watcher.close();
    target = undefined;
    if (path.dirname(real) === directory) return;
    const watcher = watch(path.dirname(real), { persistent: false }, (_event, name) => {
      if (name === null || name === path.basename(real)) schedule();
    });
    // A target directory that goes away (a ConfigMap's old ..<timestamp>) is simply dropped.
    watcher.on("error", () => watcher.close());
    target = { file: real, watcher };
  };
  let watcher: FSWatcher | undefined;
  void learn().then(() => {
    if (closed) return;
    watcher = watch(directory, { persistent: false }, (_event, name) => {
      if (name === null || names.has(name)) schedule();
    });
    watcher.on("error", (error) =>
      gateway.log.error({ err: error, directory }, "config watch failed"),
    );
    // Changes are seen only from here on; the log line tells operators (and tests) when.
    gateway.log.info({ file, directory }, "watching config file");
  });
  return {
    close: async () => {
      closed = true;
      clearTimeout(timer);
      watcher?.close();
      target?.watcher.close();
    },
  };
}
