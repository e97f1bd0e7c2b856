/**
 * What a start checks about a validated config before it serves, beyond the schema: the audit
 * file can be opened for appending, no key entry accepts the published demo key, and every
 * stdio route's command and working directory exist. `run`,
 * every reload and `check-config` run the same checks (caddy's Validate), so a config that
 * `check-config` passes also starts, and a reload that would fail to start is refused with the
 * same `FILE:LINE:COL key: message` lines.
 */
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import path from "node:path";
import {
  DEMO_API_KEY,
  DEMO_PASSWORD,
  isDemoKeyHash,
  isDemoPasswordHash,
} from "../auth/demo-key.js";
import { sqliteAvailable } from "../authorization-server/store.js";
import { currentUser, type LoadedConfig } from "../config/load.js";
import type { UpstreamConfig } from "../config/schema.js";
import { ConfigError } from "../errors.js";

/** Throws ConfigError naming every problem found. */
export async function preflight(loaded: LoadedConfig): Promise<void> {
  const problems = (
    await Promise.all([
      auditPathProblem(loaded),
      demoKeyProblems(loaded),
      demoUserProblems(loaded),
      stateDirProblem(loaded),
      stdioCommandProblems(loaded),
    ])
  ).flat();
  if (problems.length > 0) throw new ConfigError(problems);
}

async function auditPathProblem(loaded: LoadedConfig): Promise<string[]> {
  const reason = await appendFailure(loaded.config.audit.path);
  return reason === undefined ? [] : [loaded.problem(["audit", "path"], reason)];
}

/**
 * Why `file` could not be opened for appending (created if missing), without creating it:
 * `check-config` must not leave files behind. Undefined when it can.
 */
export async function appendFailure(file: string): Promise<string | undefined> {
  const directory = path.dirname(file);
  const fileStat = await stat(file).catch((error: NodeJS.ErrnoException) => error);
  if (!(fileStat instanceof Error)) {
    if (fileStat.isDirectory()) return `cannot append to ${file}: it is a directory`;
    return access(file, constants.W_OK).then(
      () => undefined,
      (error: NodeJS.ErrnoException) => cannotOpen(file, error, `write permission on ${file}`),
    );
  }
  if (fileStat.code !== "ENOENT") {
    return cannotOpen(file, fileStat, `search (x) permission on the directories of ${file}`);
  }
  const dirStat = await stat(directory).catch((error: NodeJS.ErrnoException) => error);
  if (dirStat instanceof Error) {
    return dirStat.code === "ENOENT"
      ? `cannot create ${file}: directory ${directory} does not exist (create it, writable by the user running mcpgw)`
      : cannotOpen(file, dirStat, `search (x) permission on the directories of ${file}`);
  }
  if (!dirStat.isDirectory()) return `cannot create ${file}: ${directory} is not a directory`;
  return access(directory, constants.W_OK | constants.X_OK).then(
    () => undefined,
    (error: NodeJS.ErrnoException) =>
      cannotOpen(
        file,
        error,
        `write and search (wx) permission on ${directory} to create the file`,
      ),
  );
}

/** A failed open of the audit file, with the permission it needs where that is the cause. */
export function cannotOpen(file: string, error: NodeJS.ErrnoException, needs: string): string {
  if (error.code === "EACCES" || error.code === "EPERM") {
    return `cannot open ${file} for appending: permission denied: the user running mcpgw (${currentUser()}) needs ${needs}`;
  }
  if (error.code === "EROFS") return `cannot open ${file} for appending: read-only file system`;
  if (error.code === "ENOENT") return `cannot open ${file} for appending: no such directory`;
  if (error.code === "ENOTDIR")
    return `cannot open ${file} for appending: a part of the path is not a directory`;
  return `cannot open ${file} for appending: ${error.message}`;
}

async function demoKeyProblems(loaded: LoadedConfig): Promise<string[]> {
  const { auth } = loaded.config;
  if (!auth.enabled || auth.allow_demo_key) return [];
  const verdicts = await Promise.all(auth.keys.map((key) => isDemoKeyHash(key.hash)));
  return auth.keys.flatMap((key, index) =>
    verdicts[index]
      ? [
          loaded.problem(
            ["auth", "keys", index, "hash"],
            `key "${key.id}" accepts the published demo key (${DEMO_API_KEY}), which protects nothing: make a real key with \`mcpgw gen-key --id ${key.id}\` and replace this entry (auth.allow_demo_key: true is for demos only)`,
          ),
        ]
      : [],
  );
}

/**
 * A stdio route whose command is not there would fail on its first session, at request time:
 * said at start and on reload instead, with the key that names it.
 */
async function stdioCommandProblems(loaded: LoadedConfig): Promise<string[]> {
  const { config } = loaded;
  const upstreams: [(string | number)[], UpstreamConfig][] = [
    ...(config.upstream ? [[["upstream"], config.upstream] as [string[], UpstreamConfig]] : []),
    ...config.routes.map(
      (route, index) =>
        [["routes", index, "upstream"], route.upstream] as [(string | number)[], UpstreamConfig],
    ),
  ];
  const problems = await Promise.all(
    upstreams.map(async ([at, upstream]) => {
      const [program] = upstream.command ?? [];
      if (program === undefined) return [];
      if (upstream.cwd !== undefined) {
        const cwd = await stat(upstream.cwd).catch(() => undefined);
        if (!cwd?.isDirectory()) {
          return [loaded.problem([...at, "cwd"], `${upstream.cwd} is not a directory`)];
        }
      }
      const searchPath = upstream.env?.PATH ?? process.env.PATH ?? "";
      if (await findExecutable(program, upstream.cwd ?? process.cwd(), searchPath)) return [];
      return [
        loaded.problem(
          [...at, "command", 0],
          program.includes("/")
            ? `${program} is not an executable file`
            : `command "${program}" not found on PATH (${searchPath})`,
        ),
      ];
    }),
  );
  return problems.flat();
}

/** Where a child process would find `program` (as execvp does), or undefined. */
async function findExecutable(
  program: string,
  cwd: string,
  searchPath: string,
): Promise<string | undefined> {
  const candidates = program.includes("/")
    ? [path.resolve(cwd, program)]
    : searchPath
        .split(path.delimiter)
        .filter(Boolean)
        .map((dir) => path.join(dir, program));
  for (const candidate of candidates) {
    const found = await stat(candidate).catch(() => undefined);
    if (
      found?.isFile() &&
      (await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      ))
    ) {
      return candidate;
    }
  }
  return undefined;
}

/** The demo user of `npm start`'s authorization server: refused outside a demo, as the key. */
async function demoUserProblems(loaded: LoadedConfig): Promise<string[]> {
  const { authorization_server: server, auth } = loaded.config;
  if (!server.enabled || auth.allow_demo_key) return [];
  const verdicts = await Promise.all(
    server.users.map((user) => isDemoPasswordHash(user.password_hash)),
  );
  return server.users.flatMap((user, index) =>
    verdicts[index]
      ? [
          loaded.problem(
            ["authorization_server", "users", index, "password_hash"],
            `user "${user.username}" has the published demo password (${DEMO_PASSWORD}): set a real one with \`mcpgw hash-password\` (auth.allow_demo_key: true is for demos only)`,
          ),
        ]
      : [],
  );
}

/** The authorization server keeps its keys in `state_dir`: it must be there or creatable. */
async function stateDirProblem(loaded: LoadedConfig): Promise<string[]> {
  const { authorization_server: server } = loaded.config;
  if (!server.enabled) return [];
  if (server.store?.type === "sqlite" && !sqliteAvailable()) {
    return [
      loaded.problem(
        ["authorization_server", "store", "type"],
        `sqlite needs node:sqlite, which Node ${process.version} lacks: run on Node 24 LTS (or 22.5+), or set store: {type: memory}`,
      ),
    ];
  }
  const dir = server.state_dir;
  const found = await stat(dir).catch(() => undefined);
  const target = found ? dir : path.dirname(dir);
  const writable = await access(target, constants.W_OK | constants.X_OK).then(
    () => true,
    () => false,
  );
  if (found && !found.isDirectory()) {
    return [loaded.problem(["authorization_server", "state_dir"], `${dir} is not a directory`)];
  }
  if (writable) return [];
  return [
    loaded.problem(
      ["authorization_server", "state_dir"],
      found
        ? `${dir} is not writable by the user running mcpgw (${currentUser()})`
        : `cannot create ${dir}: ${target} is missing or not writable by the user running mcpgw (${currentUser()})`,
    ),
  ];
}
