import cluster from "node:cluster";
import { type FSWatcher, watch } from "node:fs";
import { readlink, realpath } from "node:fs/promises";
import path from "node:path";
import { loadConfigFile } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError, EXIT } from "../errors.js";
import { createLogger, flushLogs, type Logger } from "../log.js";
import { Gateway, type ReloadTrigger } from "../runtime/gateway.js";
import { JwksPrimeError } from "../runtime/generation.js";
import { Primary, WorkerChannel, WorkerStartError, workerCount } from "../runtime/workers.js";
import { version } from "../version.js";

/**
 * `mcpgw run`: the daemon in the foreground until SIGTERM/SIGINT. Resolves to the exit code.
 * With `workers: N` (N > 1) this process is the primary of N workers (runtime/workers.ts);
 * each worker runs this function again, as a gateway that reports to the primary.
 */
export async function run(configFile: string): Promise<number> {
  if (cluster.isWorker) return serve(configFile, Number(process.env.MCPGW_WORKER));
  const log = createLogger();
  // A file that does not load is reported by the gateway's start below, as it always has been.
  const config = await loadConfigFile(configFile).then(
    (loaded) => loaded.config,
    () => undefined,
  );
  const workers = config ? workerCount(config.workers) : 1;
  return config && workers > 1
    ? runPrimary(configFile, config, workers, log)
    : serve(configFile, undefined, log);
}

/** A gateway in this process: the whole daemon, or worker `index` of a primary. */
async function serve(
  configFile: string,
  index: number | undefined,
  log: Logger = createLogger(),
): Promise<number> {
  const worker = index !== undefined;
  if (worker) log = log.child({ worker: index });
  // Signal handlers come first: a SIGHUP's default action would kill a daemon that is still
  // starting (logrotate or an operator does not know), and a SIGTERM then must still drain.
  let gateway: Gateway | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  let stopRequested: (signal: NodeJS.Signals) => void = (signal) => {
    stopSignal = signal;
  };
  if (worker) {
    // The primary relays reloads and reopens: a signal sent to the whole process group (a
    // terminal's hangup) must not make each worker reload on its own as well.
    process.on("SIGHUP", () => {});
    process.on("SIGUSR1", () => {});
    // A primary that is gone (killed with SIGKILL) leaves its workers to drain and exit.
    process.once("disconnect", () => stopRequested("SIGTERM"));
  } else {
    // While starting, the file is being read anyway: a SIGHUP then has nothing more to apply.
    process.on("SIGHUP", () => void gateway?.reload("SIGHUP"));
    process.on("SIGUSR1", () => void gateway?.reopenAuditLog("SIGUSR1"));
  }
  process.once("SIGTERM", (signal) => stopRequested(signal));
  process.once("SIGINT", (signal) => stopRequested(signal));

  const channel = !worker
    ? undefined
    : new WorkerChannel(
        {
          reload: async (trigger) => gateway?.reload(trigger),
          reopenAudit: async () => gateway?.reopenAuditLog("SIGUSR1"),
          exposition: async () => (await gateway?.exposition())?.body ?? "",
        },
        log,
      );
  try {
    gateway = await Gateway.start({ configFile, log, ...(channel && { worker: channel }) });
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
  const { address, port } = running.address;
  channel?.ready({ address, port, url: running.url, generation: running.generation.id });
  const watcher =
    !worker && running.generation.config.reload.watch
      ? watchConfig({
          file: running.configFile,
          debounce: () => running.generation.config.reload.debounce,
          reload: (trigger) => running.reload(trigger),
          log: running.log,
        })
      : undefined;
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
 * The primary of `workers: N`: forks the workers, relays the signals, watches the file, and
 * exits once every worker has drained.
 */
async function runPrimary(
  configFile: string,
  config: Config,
  count: number,
  log: Logger,
): Promise<number> {
  const primary = new Primary(count, log);
  let stopping = false;
  let started = false;
  let stopped: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    stopped = resolve;
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    void primary.stop(signal, config.shutdown_timeout).then(stopped);
  };
  process.on("SIGHUP", () => {
    if (started) void primary.reload("SIGHUP");
  });
  process.on("SIGUSR1", () => {
    if (started) primary.reopenAudit();
  });
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);

  let listening: Awaited<ReturnType<Primary["start"]>> | undefined;
  try {
    // A SIGTERM while the workers start stops them: nothing is left to wait for.
    listening = await Promise.race([primary.start(), done.then(() => undefined)]);
    if (listening === undefined) {
      await flushLogs(log);
      return EXIT.ok;
    }
  } catch (error) {
    // The worker logged why; its exit code (78 for a config error) is the daemon's.
    await flushLogs(log);
    return error instanceof WorkerStartError ? error.code : EXIT.fatal;
  }
  started = true;
  log.level = config.log.level;
  log.info(
    {
      ...listening,
      workers: count,
      version: version(),
      config: path.resolve(configFile),
      node: process.version,
    },
    "listening",
  );
  if ((config.rate_limits?.length ?? 0) > 0 && config.store.type === "memory") {
    log.warn(
      { workers: count },
      `rate_limits: each of the ${count} workers keeps its own buckets (store: memory), so a client may get up to ${count} times each rate; set store: {type: redis} for one budget`,
    );
  }
  const watcher = config.reload.watch
    ? watchConfig({
        file: configFile,
        debounce: () => config.reload.debounce,
        reload: (trigger) => primary.reload(trigger),
        log,
      })
    : undefined;
  await done;
  await watcher?.close();
  await flushLogs(log);
  return EXIT.ok;
}

/** What the config watch reloads: a gateway, or the primary's workers. */
interface Watched {
  file: string;
  debounce(): number;
  reload(trigger: ReloadTrigger): Promise<unknown>;
  log: Logger;
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
function watchConfig(gateway: Watched) {
  const file = path.resolve(gateway.file);
  const directory = path.dirname(file);
  let timer: NodeJS.Timeout | undefined;
  let names = new Set<string>([path.basename(file)]);
  let target: { file: string; watcher: FSWatcher } | undefined;
  let closed = false;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      void learn().then(() => gateway.reload("file change"));
    }, gateway.debounce());
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
