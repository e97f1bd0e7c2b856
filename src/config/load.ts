/**
 * Reads a YAML config file into a validated `Config`, keeping source positions so that every
 * problem is reported as `FILE:LINE:COL key.path: message`.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Node,
  parseDocument,
  visit,
} from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { SEALED_PREFIX, SecretBox } from "../secrets/cipher.js";
import { type Config, configSchema } from "./schema.js";

export interface LoadedConfig {
  file: string;
  config: Config;
  /**
   * A problem found after validation (a file that cannot be opened, a demo key) in the
   * documented form: `FILE:LINE:COL key.path: message`, at the key's position in the file.
   */
  problem(keyPath: readonly PathSegment[], message: string): string;
}

export type PathSegment = string | number;

/** Loads, expands `${ENV}` in and validates the config file; throws ConfigError with every problem. */
export async function loadConfigFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError([`${file}: cannot read config: ${readFailure(file, error)}`]);
  }
  return parseConfigText(text, file, env);
}

/** Why a file could not be read, and what to do about it. */
function readFailure(file: string, error: unknown): string {
  switch ((error as NodeJS.ErrnoException).code) {
    case "ENOENT":
      return "no such file (name the config with --config FILE or $MCPGW_CONFIG; the default is ./mcpgw.yaml)";
    case "EACCES":
    case "EPERM":
      return `permission denied: the user running mcpgw (${currentUser()}) needs read permission on ${path.resolve(file)} and search (x) permission on its directories`;
    case "EISDIR":
      return "is a directory, not a file";
    default:
      return (error as Error).message;
  }
}

/** `uid 998` (or the name where the platform has no uids), for permission messages. */
export function currentUser(): string {
  return typeof process.getuid === "function" ? `uid ${process.getuid()}` : "the current user";
}

/** Parses config text; `file` is used in messages and to resolve relative paths. */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Config {
  return parseConfigText(text, file, env).config;
}

function parseConfigText(text: string, file: string, env: NodeJS.ProcessEnv): LoadedConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  // Lines counted in the text itself: yaml's LineCounter misses the line break inside a token
  // it cannot parse (`  ...\n!` put the `!` at the end of the line before).
  const lineStarts = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lineStarts.push(i + 1);
  const at = (offset: number) => {
    let line = lineStarts.length;
    while ((lineStarts[line - 1] as number) > offset) line--;
    return `${file}:${line}:${offset - (lineStarts[line - 1] as number) + 1}`;
  };

  const syntaxProblems = doc.errors.map((error) => {
    const offset = unclosedTokenAt(doc, error.pos[0]) ?? error.pos[0];
    const keyPath = formatPath(pathAtOffset(doc, offset)) || "(document)";
    return `${at(offset)} ${keyPath}: ${firstLine(error.message)}`;
  });
  if (syntaxProblems.length > 0) throw new ConfigError(syntaxProblems);

  const expansionProblems = expandEnv(doc, env).map(
    ({ node, keyPath, message }) =>
      `${at(node.range?.[0] ?? 0)} ${formatPath(keyPath)}: ${message}`,
  );
  if (expansionProblems.length > 0) throw new ConfigError(expansionProblems);

  const secretProblems = openSealedSecrets(doc, env).map(
    ({ node, keyPath, message }) =>
      `${at(node.range?.[0] ?? 0)} ${formatPath(keyPath)}: ${message}`,
  );
  if (secretProblems.length > 0) throw new ConfigError(secretProblems);

  let raw: unknown;
  try {
    raw = doc.toJS() ?? {};
  } catch (error) {
    // yaml resolves aliases only here, and throws: an alias with no anchor before it, or more
    // alias expansions than it allows (a "billion laughs" document).
    if (!(error instanceof ReferenceError)) throw error;
    const offset = aliasOffset(doc);
    const keyPath = formatPath(pathAtOffset(doc, offset)) || "(document)";
    throw new ConfigError([`${at(offset)} ${keyPath}: ${firstLine(error.message)}`]);
  }
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError([`${file}:1:1 (document): the config must be a YAML mapping of keys`]);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(result.error.issues.flatMap((issue) => describeIssue(doc, issue, at)));
  }
  const config = result.data;
  // Relative paths in the config mean relative to the config file, wherever mcpgw was started.
  const folder = path.dirname(path.resolve(file));
  config.audit.path = path.resolve(folder, config.audit.path);
  config.authorization_server.state_dir = path.resolve(
    folder,
    config.authorization_server.state_dir,
  );
  config.secrets.state_dir = path.resolve(folder, config.secrets.state_dir);
  for (const upstream of [config.upstream, ...config.routes.map((route) => route.upstream)]) {
    if (upstream?.cwd !== undefined) upstream.cwd = path.resolve(folder, upstream.cwd);
    if (upstream?.auth?.type === "bearer" && upstream.auth.token_file !== undefined) {
      upstream.auth.token_file = path.resolve(folder, upstream.auth.token_file);
    }
  }
  return {
    file,
    config,
    problem: (keyPath, message) =>
      `${at(nodeOffset(doc, keyPath))} ${formatPath(keyPath) || "(document)"}: ${message}`,
  };
}

/**
 * The start of the flow collection (`[`, `{`) or quoted scalar that an error at `offset` leaves
 * unclosed. The parser notices such a token only where the next line begins, so without this
 * `timeout: [30s` on line 4 would be reported at 5:1.
 */
function unclosedTokenAt(doc: Document, offset: number): number | undefined {
  let start: number | undefined;
  visit(doc, (_key, node) => {
    const range = (node as Node | null)?.range;
    if (!range || range[0] >= offset || range[2] < offset) return;
    const unclosable =
      ((isMap(node) || isSeq(node)) && node.flow === true) ||
      (isScalar(node) && (node.type === "QUOTE_SINGLE" || node.type === "QUOTE_DOUBLE"));
    if (unclosable && (start === undefined || range[0] > start)) start = range[0];
  });
  return start;
}

/** The first alias without an anchor before it, else the first alias: what toJS refused. */
function aliasOffset(doc: Document): number {
  const anchors = new Set<string>();
  let first: number | undefined;
  let unresolved: number | undefined;
  visit(doc, (_key, node) => {
    if (isAlias(node)) {
      first ??= node.range?.[0];
      if (!anchors.has(node.source)) {
        unresolved = node.range?.[0];
        return visit.BREAK;
      }
    } else if (typeof (node as { anchor?: unknown } | null)?.anchor === "string") {
      anchors.add((node as { anchor: string }).anchor);
    }
    return undefined;
  });
  return unresolved ?? first ?? 0;
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
      const suggestion = closestKey(key, knownKeys(keyPath));
      const hint = suggestion === undefined ? "" : ` (did you mean "${suggestion}"?)`;
      return `${at(keyNode?.range?.[0] ?? nodeOffset(doc, keyPath))} ${formatPath([...keyPath, key])}: unknown key${hint}`;
    });
  }
  const node = doc.getIn(keyPath, true) as Node | undefined;
  const message =
    issue.code !== "invalid_type"
      ? issue.message
      : node === undefined
        ? `required ${issue.expected} is missing`
        : typeMismatch(keyPath, issue.expected, doc.getIn(keyPath));
  return [
    `${at(node?.range?.[0] ?? nodeOffset(doc, keyPath))} ${formatPath(keyPath) || "(document)"}: ${message}`,
  ];
}

/** The JSON Schema of the config, for the names and formats of keys in messages. */
interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  format?: string;
}
let jsonSchema: SchemaNode | undefined;

function schemaAt(keyPath: readonly PathSegment[]): SchemaNode | undefined {
  jsonSchema ??= z.toJSONSchema(configSchema, {
    io: "input",
    unrepresentable: "any",
  }) as SchemaNode;
  let node: SchemaNode | undefined = jsonSchema;
  for (const segment of keyPath) {
    const options: SchemaNode[] = node?.anyOf ?? (node ? [node] : []);
    node = undefined;
    for (const option of options) {
      node ??= typeof segment === "number" ? option.items : option.properties?.[segment];
    }
  }
  return node;
}

function knownKeys(keyPath: readonly PathSegment[]): string[] {
  const node = schemaAt(keyPath);
  return [...(node?.anyOf ?? (node ? [node] : []))].flatMap((option) =>
    Object.keys(option.properties ?? {}),
  );
}

const FORMAT_HINTS: Record<string, string> = {
  duration: 'a duration with a unit, like "30s" or "5m"',
  size: 'a size, like "4MiB" or a number of bytes',
  "host:port": 'an address "HOST:PORT", like "127.0.0.1:8080" or ":8080" for every interface',
};

/**
 * A value of the wrong type, in words an operator can act on: `listen: 8085` is not
 * HOST:PORT, and `timeout: 60` lacks a unit.
 */
function typeMismatch(keyPath: readonly PathSegment[], expected: string, value: unknown): string {
  const format = schemaAt(keyPath)?.format;
  const hint = format === undefined ? undefined : FORMAT_HINTS[format];
  const wanted = hint ?? (/^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`);
  let fix = "";
  if (typeof value === "number" && format === "host:port") {
    fix = `: write "127.0.0.1:${value}" (this host only) or ":${value}" (every interface)`;
  } else if (typeof value === "number" && format === "duration") {
    fix = `: write "${value}s" for seconds`;
  }
  return `expected ${wanted}, got ${describeValue(value)}${fix}`;
}

function describeValue(value: unknown): string {
  if (value === null) return "null (an empty value)";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  return `the ${typeof value} ${String(value)}`;
}

/** The known key nearest to a mistyped one (edit distance of at most 2, or a third). */
function closestKey(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(key.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Edit distance where swapping two neighbouring letters counts once (`audti` -> `audit`). */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const cell = (i: number, j: number) => rows[i]?.[j] as number;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(cell(i - 1, j) + 1, cell(i, j - 1) + 1, cell(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, cell(i - 2, j - 2) + 1);
      }
      (rows[i] as number[])[j] = distance;
    }
  }
  return cell(a.length, b.length);
}

/** Offset of the deepest existing node on `keyPath`, so a missing key points at its parent. */
function nodeOffset(doc: Document, keyPath: readonly PathSegment[]): number {
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

/**
 * Opens every `enc:v1:` string (`mcpgw encrypt-secret`) with `secrets.encryption_key`, or
 * `$AUTH_ENCRYPTION_SECRET` when the config has none, and the previous keys; each value that
 * does not open is a problem at its line.
 */
function openSealedSecrets(doc: Document, env: NodeJS.ProcessEnv) {
  const problems: { node: Node; keyPath: PathSegment[]; message: string }[] = [];
  let box: SecretBox | undefined;
  let boxProblem: string | undefined;
  visit(doc, {
    Scalar(_key, node, ancestors) {
      if (typeof node.value !== "string" || !node.value.startsWith(SEALED_PREFIX)) return;
      const keyPath = ancestorsPath(ancestors, node);
      if (box === undefined && boxProblem === undefined) {
        try {
          box = secretBoxOf(doc.toJS(), env);
          if (box === undefined) {
            boxProblem =
              "an enc:v1 value needs secrets.encryption_key in the config or $AUTH_ENCRYPTION_SECRET";
          }
        } catch (error) {
          boxProblem = `secrets: ${(error as Error).message}`;
        }
      }
      if (box === undefined) {
        problems.push({ node, keyPath, message: boxProblem as string });
        return;
      }
      try {
        node.value = box.openText(node.value);
      } catch (error) {
        problems.push({ node, keyPath, message: (error as Error).message });
      }
    },
  });
  return problems;
}

/**
 * The box of the config's `secrets` (after `${ENV}` expansion), or of
 * `$AUTH_ENCRYPTION_SECRET`; undefined when there is no key.
 */
export function secretBoxOf(raw: unknown, env: NodeJS.ProcessEnv): SecretBox | undefined {
  const secrets = (
    raw as { secrets?: { encryption_key?: unknown; previous_encryption_keys?: unknown } } | null
  )?.secrets;
  const key =
    typeof secrets?.encryption_key === "string"
      ? secrets.encryption_key
      : env.AUTH_ENCRYPTION_SECRET;
  if (key === undefined || key === "") return undefined;
  const previous = Array.isArray(secrets?.previous_encryption_keys)
    ? secrets.previous_encryption_keys.filter((entry): entry is string => typeof entry === "string")
    : [];
  return new SecretBox(key, previous);
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
