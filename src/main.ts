#!/usr/bin/env node
/** The `mcpgw` command: parses argv and hands over to cli/. */
import { parseArgs } from "node:util";
import { checkConfig } from "./cli/check-config.js";
import { genKey, hashKey } from "./cli/keys.js";
import { run } from "./cli/run.js";
import { EXIT } from "./errors.js";
import { version } from "./version.js";

const USAGE = `mcpgw: an authenticating gateway for MCP servers

Usage:
  mcpgw [run] [--config FILE]       run the gateway in the foreground
  mcpgw check-config [--config FILE] validate the config without listening (exit 0 ok, 78 invalid)
  mcpgw hash-key                     read a key on stdin, print its argon2id hash
  mcpgw gen-key [--id NAME]          print a new random key and its auth.keys entry
  mcpgw --version | --help

FILE defaults to $MCPGW_CONFIG, then ./mcpgw.yaml.
Signals: SIGHUP reloads the config and reopens the audit file; SIGTERM/SIGINT drain and exit.
`;

const COMMANDS = new Set(["run", "check-config", "hash-key", "gen-key"]);

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
    process.stdout.write(`mcpgw ${version()}\n`);
    return EXIT.ok;
  }
  const command = positionals[0] ?? "run";
  if (!COMMANDS.has(command) || positionals.length > 1) {
    process.stderr.write(`mcpgw: unknown command "${positionals.join(" ")}"\n\n${USAGE}`);
    return EXIT.usage;
  }
  const configFile = values.config ?? process.env.MCPGW_CONFIG ?? "mcpgw.yaml";
  switch (command) {
    case "check-config":
      return checkConfig(configFile, process.stdout, process.stderr);
    case "hash-key":
      return hashKey(process.stdin, process.stdout, process.stderr);
    case "gen-key":
      return genKey(values.id ?? "new-key", process.stdout);
    default:
      return run(configFile);
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      id: { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`mcpgw: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = EXIT.fatal;
  },
);
