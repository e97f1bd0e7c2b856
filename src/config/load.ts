/**
 * Reads a YAML config file into a validated `Config`, keeping source positions so that every
 * problem is reported as `FILE:LINE:COL key.path: message`.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type Document,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  visit,
} from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.js";
import { type Config, configSchema } from "./schema.js";

export interface LoadedConfig {
  file: string;
  config: Config;
}

type PathSegment = string | number;

/** Loads, expands `${ENV}` in and validates the config file; throws ConfigError with every problem. */
export async function loadConfigFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : String(error);
    throw new ConfigError([`${file}: cannot read config: ${reason}`]);
  }
  return { file, config: parseConfig(text, file, env) };
}

/** Parses config text; `file` is used in messages and to resolve relative paths. */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };

  const syntaxProblems = doc.errors.map((error) => {
    const offset = error.pos[0];
    const keyPath = formatPath(pathAtOffset(doc, offset)) || "(document)";
    return `${at(offset)} ${keyPath}: ${firstLine(error.message)}`;
  });
  if (syntaxProblems.length > 0) throw new ConfigError(syntaxProblems);

  const expansionProblems = expandEnv(doc, env).map(
    ({ node, keyPath, message }) =>
      `${at(node.range?.[0] ?? 0)} ${formatPath(keyPath)}: ${message}`,
  );
  if (expansionProblems.length > 0) throw new ConfigError(expansionProblems);

  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError([`${file}:1:1 (document): the config must be a YAML mapping of keys`]);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(result.error.issues.flatMap((issue) => describeIssue(doc, issue, at)));
  }
  const config = result.data;
  config.audit.path = path.resolve(path.dirname(path.resolve(file)), config.audit.path);
  return config;
}

function describeIssue(
  doc: Document,
  issue: z.core.$ZodIssue,
  at: (offset: number) => string,
): string[] {
  const keyPath = issue.path.filter(
    (segment): segment is PathSegment => typeof segment !== "symbol",
  );
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const keyNode = findKeyNode(doc, keyPath, key);
      return `${at(keyNode?.range?.[0] ?? nodeOffset(doc, keyPath))} ${formatPath([...keyPath, key])}: unknown key`;
    });
  }
  const node = doc.getIn(keyPath, true) as Node | undefined;
  const message =
    issue.code === "invalid_type" && node === undefined
      ? `required ${issue.expected} is missing`
      : issue.message;
  return [
    `${at(node?.range?.[0] ?? nodeOffset(doc, keyPath))} ${formatPath(keyPath) || "(document)"}: ${message}`,
  ];
}

/** Offset of the deepest existing node on `keyPath`, so a missing key points at its parent. */
function nodeOffset(doc: Document, keyPath: PathSegment[]): number {
  for (let depth = keyPath.length; depth >= 0; depth--) {
    const node = doc.getIn(keyPath.slice(0, depth), true) as Node | undefined;
    if (node?.range) return node.range[0];
  }
  return 0;
}

function findKeyNode(doc: Document, parentPath: PathSegment[], key: string): Node | undefined {
  const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true);
  if (!isMap(parent)) return undefined;
  for (const pair of parent.items) {
    if (isScalar(pair.key) && pair.key.value === key) return pair.key;
  }
  return undefined;
}

/** The key path of the deepest node containing `offset`, for syntax errors. */
function pathAtOffset(doc: Document, offset: number): PathSegment[] {
  const found: PathSegment[] = [];
  let node: unknown = doc.contents;
  for (;;) {
    if (isMap(node)) {
      const pair = node.items.find((item) => {
        const start = (item.key as Node | null)?.range?.[0] ?? Number.POSITIVE_INFINITY;
        const end = (item.value as Node | null)?.range?.[2] ?? start;
        return start <= offset && offset <= end;
      });
      if (!pair || !isScalar(pair.key)) return found;
      found.push(String(pair.key.value));
      node = pair.value;
    } else if (isSeq(node)) {
      const index = node.items.findIndex((item) => {
        const range = (item as Node | null)?.range;
        return range != null && range[0] <= offset && offset <= range[2];
      });
      if (index < 0) return found;
      found.push(index);
      node = node.items[index];
    } else {
      return found;
    }
  }
}

const ENV_REFERENCE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces `${NAME}` in string scalars with the environment variable; `$$` is a literal `$`.
 * An unset variable is an error rather than an empty string: an empty secret or URL would
 * otherwise surface later as a confusing failure far from its cause.
 */
function expandEnv(doc: Document, env: NodeJS.ProcessEnv) {
  const problems: { node: Node; keyPath: PathSegment[]; message: string }[] = [];
  visit(doc, {
    Scalar(_key, node, ancestors) {
      if (typeof node.value !== "string" || !node.value.includes("${")) return;
      const keyPath = ancestorsPath(ancestors, node);
      node.value = node.value.replace(ENV_REFERENCE, (match, name: string | undefined) => {
        if (name === undefined) return "$";
        const value = env[name];
        if (value === undefined) {
          problems.push({ node, keyPath, message: `environment variable ${name} is not set` });
          return match;
        }
        return value;
      });
    },
  });
  return problems;
}

function ancestorsPath(ancestors: readonly unknown[], leaf: unknown): PathSegment[] {
  const keyPath: PathSegment[] = [];
  const chain = [...ancestors, leaf];
  for (let i = 0; i < chain.length; i++) {
    const current = chain[i];
    const next = chain[i + 1];
    if (isPair(current) && isScalar(current.key)) keyPath.push(String(current.key.value));
    if (isSeq(current) && next !== undefined) keyPath.push(current.items.indexOf(next as never));
  }
  return keyPath;
}

/** `["auth", "keys", 0, "hash"]` -> `auth.keys[0].hash`. */
export function formatPath(keyPath: readonly PathSegment[]): string {
  return keyPath
    .map((segment, index) =>
      typeof segment === "number" ? `[${segment}]` : index === 0 ? segment : `.${segment}`,
    )
    .join("");
}

function firstLine(text: string): string {
  return text.split("\n")[0]?.trim() ?? text;
}
