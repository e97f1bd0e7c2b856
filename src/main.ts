#!/usr/bin/env node
/** The `mcpgw` command: parses argv and hands over to cli/. */
// First, before any other module runs: see the module.
import "./inspector-signal.js";
import { parseArgs } from "node:util";
import { checkConfig } from "./cli/check-config.js";
import { encryptSecret } from "./cli/encrypt-secret.js";
import { explain } from "./cli/explain.js";
import { DEFAULT_HEALTH_URL, health } from "./cli/health.js";
import { genKey, genSessionKey, hashKey, isKeyId, KEY_ID_RULE } from "./cli/keys.js";
import { rotateKey } from "./cli/rotate-key.js";
import { run } from "./cli/run.js";
import { EXIT } from "./errors.js";
import { version } from "./version.js";

const USAGE = `mcpgw: an authenticating gateway for MCP servers

Usage:
  mcpgw [run] [--config FILE]       run the gateway in the foreground
  mcpgw check-config [--config FILE] validate the config without listening (exit 0 ok, 78 invalid)
  mcpgw hash-key                     read a key on stdin, print its argon2id hash
  mcpgw hash-password                read a password on stdin, print its argon2id hash
                                     (authorization_server.users[].password_hash)
  mcpgw encrypt-secret [--config FILE]
                                     read a secret on stdin, print it as an enc:v1 value
                                     (key: secrets.encryption_key or $AUTH_ENCRYPTION_SECRET)
  mcpgw gen-key [--id NAME]          print a new random key and its auth.keys entry
  mcpgw gen-key --session            print a new sessions.key (32 random bytes, base64)
  mcpgw rotate-signing-key [--config FILE]
                                     a new signing key for the authorization server (the
                                     previous one kept until its tokens expire); restart after
  mcpgw explain [--config FILE] --method M [--tool T | --prompt P | --resource R]
                [--route PATH] [--key-id ID | --oauth-client-id ID] [--sub S] [--scope S]...
                                     which policy rule decides such a request, and why
  mcpgw health [--url URL]           exit 0 when a running gateway's /readyz answers 200
                                     (default ${DEFAULT_HEALTH_URL})
  mcpgw --version | --help

FILE defaults to $MCPGW_CONFIG, then ./mcpgw.yaml.
Signals: SIGHUP reloads the config and reopens the audit file; SIGUSR1 reopens the audit
file only; SIGTERM/SIGINT drain and exit.
`;

/** Set once `run` has returned: the daemon has stopped and flushed what it had. */
let daemonStopped = false;

const COMMANDS = new Set([
  "run",
  "check-config",
  "hash-key",
  "hash-password",
  "encrypt-secret",
  "gen-key",
  "health",
  "rotate-signing-key",
  "explain",
]);

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    process.stderr.write(`mcpgw: ${(error as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (values.version) {
    process.stdout.write(`mcpgw ${version()} (Node.js ${process.version})\n`);
    return EXIT.ok;
  }
  const command = positionals[0] ?? "run";
  if (!COMMANDS.has(command)) {
    return usageError(`unknown command "${command}"`);
  }
  if (positionals.length > 1) {
    return usageError(`unexpected argument "${positionals[1]}" after "${command}"`);
  }
  if (values.id !== undefined && !isKeyId(values.id)) {
    return usageError(`--id "${values.id}": ${KEY_ID_RULE}`);
  }
  const configFile = values.config ?? process.env.MCPGW_CONFIG ?? "mcpgw.yaml";
  switch (command) {
    case "check-config":
      return checkConfig(configFile, process.stdout, process.stderr);
    case "hash-key":
      return hashKey(process.stdin, process.stdout, process.stderr);
    case "hash-password":
      return hashKey(process.stdin, process.stdout, process.stderr, "password");
    case "encrypt-secret":
      return encryptSecret(
        values.config,
        process.env.MCPGW_CONFIG ?? "mcpgw.yaml",
        process.stdin,
        process.stdout,
        process.stderr,
      );
    case "gen-key":
      if (values.session) return genSessionKey(process.stdout);
      return genKey(values.id ?? "new-key", process.stdout);
    case "health":
      return health(values.url ?? DEFAULT_HEALTH_URL, process.stdout, process.stderr);
    case "rotate-signing-key":
      return rotateKey(configFile, process.stdout, process.stderr);
    case "explain":
      return explain(
        configFile,
        {
          route: values.route,
          method: values.method,
          tool: values.tool,
          prompt: values.prompt,
          resource: values.resource,
          keyId: values["key-id"],
          oauthClientId: values["oauth-client-id"],
          sub: values.sub,
          scopes: values.scope ?? [],
        },
        process.stdout,
        process.stderr,
      );
    default: {
      const code = await run(configFile);
      daemonStopped = true;
      return code;
    }
  }
}

function usageError(message: string): number {
  process.stderr.write(`mcpgw: ${message}\n\n${USAGE}`);
  return EXIT.usage;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      id: { type: "string" },
      url: { type: "string" },
      session: { type: "boolean" },
      route: { type: "string" },
      method: { type: "string" },
      tool: { type: "string" },
      prompt: { type: "string" },
      resource: { type: "string" },
      "key-id": { type: "string" },
      "oauth-client-id": { type: "string" },
      sub: { type: "string" },
      scope: { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A stopped daemon exits now, its logs and audit flushed, rather than when the last
    // handle closes: a span export that shutdown gave up on could hold the process for
    // the exporter's own timeout.
    if (daemonStopped) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`mcpgw: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = EXIT.fatal;
  },
);
