/**
 * The authorization policy (`policy:`): ordered rules, the first that matches decides, else the
 * default. A rule matches on what the request is (route, JSON-RPC method, tool, prompt,
 * resource) and who sends it (key id, OAuth client, subject, a scope it holds); its effect is
 * allow, deny, or require_scopes (the caller must hold them: 403 insufficient_scope otherwise,
 * so that an OAuth client can step up). Compiled once per generation; a decision is a walk of
 * the rules with precompiled patterns, remembered per caller: a caller who calls the same tool
 * again, or lists the same tools, is answered from the memo.
 */
import type { Principal } from "../auth/principal.js";
import type { Config } from "../config/schema.js";
import { setBounded } from "../lib/bounded-map.js";

export type PolicyConfig = NonNullable<Config["policy"]>;
type RuleConfig = PolicyConfig["rules"][number];

/** What a rule looks at. */
export interface Subject {
  route: string;
  method: string;
  tool?: string | undefined;
  prompt?: string | undefined;
  resource?: string | undefined;
  principal: Principal;
}

export type Effect =
  | { kind: "allow" }
  | { kind: "deny" }
  | { kind: "require_scopes"; scopes: readonly string[] };

export interface Decision {
  /** The deciding rule's id, or `default`. */
  rule: string;
  effect: Effect;
}

const MATCH_KEYS = [
  "route",
  "method",
  "tool",
  "prompt",
  "resource",
  "key_id",
  "oauth_client_id",
  "sub",
] as const;
type MatchKey = (typeof MATCH_KEYS)[number];
const NAME_KEYS = ["tool", "prompt", "resource"] as const;

/** Decisions remembered per caller, at most: a flood of distinct tool names cannot grow it. */
const MEMO_PER_CALLER = 1024;

/** A compiled glob: a plain string compares as a string, a pattern runs its RegExp. */
interface Pattern {
  test(value: string): boolean;
}

interface Rule {
  id: string;
  effect: Effect;
  patterns: readonly [MatchKey, Pattern][];
  /** `match.scope`: a scope the caller must hold for the rule to match. */
  scope: string | undefined;
  config: RuleConfig;
}

export class Policy {
  readonly #rules: readonly Rule[];
  readonly #default: Decision;
  /**
   * Decisions by caller. A verified credential's principal is one object for as long as the
   * credential is cached, and rules see nothing of a request but the subject, so a decision
   * holds for every later subject alike. The memo dies with the policy (a reload).
   */
  readonly #memo = new WeakMap<Principal, Map<string, Decision>>();
  readonly #hints = new Map<string, readonly string[] | undefined>();
  readonly #patterns = new Map<string, RegExp | undefined>();

  constructor(config: PolicyConfig) {
    this.#rules = config.rules.map(compile);
    this.#default = { rule: "default", effect: { kind: config.default } };
  }

  /**
   * Whether any call of `method` could be refused: a rule that refuses (deny, require_scopes)
   * and whose method pattern takes it, or a default of deny. When none can, a list of what
   * that method calls is passed on as it is, not parsed and filtered.
   */
  mayRefuse(method: string): boolean {
    if (this.#default.effect.kind !== "allow") return true;
    return this.#rules.some((rule) => {
      if (rule.effect.kind === "allow") return false;
      const pattern = rule.patterns.find(([key]) => key === "method")?.[1];
      return pattern === undefined || pattern.test(method);
    });
  }

  /**
   * Text one piece of which a list's JSON must contain for the policy to refuse any item of it
   * (a call of `method` naming it by `key`): per rule that could refuse such a call, the
   * longest literal run of its name pattern. Undefined when no such text can be named: a
   * default of deny, or a refusing rule that does not look at the name, or whose pattern has
   * no literal. A list without any of them is passed on as it is, unparsed.
   */
  refusalHints(method: string, key: "tool" | "prompt" | "resource"): readonly string[] | undefined {
    const cacheKey = `${key} ${method}`;
    if (this.#hints.has(cacheKey)) return this.#hints.get(cacheKey);
    let hints: string[] | undefined = [];
    if (this.#default.effect.kind !== "allow") hints = undefined;
    for (const rule of this.#rules) {
      if (hints === undefined) break;
      if (rule.effect.kind === "allow") continue;
      const methodPattern = rule.patterns.find(([name]) => name === "method")?.[1];
      if (methodPattern !== undefined && !methodPattern.test(method)) continue;
      // A rule on another kind of name never matches this list's calls.
      if (NAME_KEYS.some((other) => other !== key && rule.config.match[other] !== undefined)) {
        continue;
      }
      const hint = longestLiteral(rule.config.match[key]);
      if (hint === undefined) hints = undefined;
      else hints.push(hint);
    }
    this.#hints.set(cacheKey, hints);
    return hints;
  }

  /**
   * The refusal hints as one RegExp, with `\\u` beside them (an escape could spell a hint
   * otherwise): a list's text it does not match has no item the policy refuses. One scan of
   * the text, however many hints.
   */
  refusalPattern(method: string, key: "tool" | "prompt" | "resource"): RegExp | undefined {
    const cacheKey = `${key} ${method}`;
    if (this.#patterns.has(cacheKey)) return this.#patterns.get(cacheKey);
    const hints = this.refusalHints(method, key);
    const pattern =
      hints === undefined
        ? undefined
        : new RegExp(
            ["\\\\u", ...hints.map((hint) => hint.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))].join(
              "|",
            ),
          );
    this.#patterns.set(cacheKey, pattern);
    return pattern;
  }

  decide(subject: Subject): Decision {
    const key = memoKey(subject);
    if (key === undefined) return this.#walk(subject);
    let memo = this.#memo.get(subject.principal);
    if (memo === undefined) {
      memo = new Map();
      this.#memo.set(subject.principal, memo);
    }
    let decision = memo.get(key);
    if (decision === undefined) {
      decision = this.#walk(subject);
      setBounded(memo, key, decision, MEMO_PER_CALLER);
    }
    return decision;
  }

  #walk(subject: Subject): Decision {
    for (const rule of this.#rules) {
      if (matches(rule, subject)) return { rule: rule.id, effect: rule.effect };
    }
    return this.#default;
  }

  /**
   * Rules no request can reach: a rule before them matches everything they match (`mcpgw
   * check-config` warns about them). Judged on the match keys as written: a later pattern is
   * covered when the earlier one is `*` or matches it read as plain text.
   */
  unreachable(): { rule: string; shadowedBy: string }[] {
    const found: { rule: string; shadowedBy: string }[] = [];
    this.#rules.forEach((rule, index) => {
      const earlier = this.#rules.slice(0, index).find((before) => covers(before, rule));
      if (earlier) found.push({ rule: rule.id, shadowedBy: earlier.id });
    });
    return found;
  }
}

/** Whether `effect` lets the request through for `principal` (require_scopes: all held). */
export function permits(effect: Effect, principal: Principal): boolean {
  if (effect.kind === "allow") return true;
  if (effect.kind === "deny") return false;
  return missingScopes(effect.scopes, principal).length === 0;
}

export function missingScopes(required: readonly string[], principal: Principal): string[] {
  if (principal.scopes.includes("*")) return [];
  return required.filter((scope) => !principal.scopes.includes(scope));
}

function compile(config: RuleConfig): Rule {
  const patterns: [MatchKey, Pattern][] = [];
  for (const key of MATCH_KEYS) {
    const pattern = config.match[key];
    if (pattern === undefined) continue;
    patterns.push([key, compilePattern(pattern)]);
  }
  const effect: Effect = config.require_scopes
    ? { kind: "require_scopes", scopes: config.require_scopes }
    : { kind: config.effect ?? "deny" };
  return { id: config.id, effect, patterns, scope: config.match.scope, config };
}

/**
 * Most patterns are a name (`tools/call`), a prefix (`delete_*`) or a suffix (`*_admin`): a
 * string comparison each, for the rules a request walks through; the rest run a RegExp.
 */
function compilePattern(pattern: string): Pattern {
  const stars = pattern.split("*").length - 1;
  if (!pattern.includes("?")) {
    if (stars === 0) return { test: (value) => value === pattern };
    if (stars === 1 && pattern.endsWith("*")) {
      const prefix = pattern.slice(0, -1);
      return { test: (value) => value.startsWith(prefix) };
    }
    if (stars === 1 && pattern.startsWith("*")) {
      const suffix = pattern.slice(1);
      return { test: (value) => value.endsWith(suffix) };
    }
  }
  return glob(pattern);
}

/**
 * The longest run of a glob that any name it matches contains as it is written in JSON: no
 * wildcard, and none of the characters JSON may write otherwise (`"`, `\\`, `/`, controls) than
 * by a `\\u` escape (which the caller looks for). Undefined for no pattern or no such run.
 */
function longestLiteral(pattern: string | undefined): string | undefined {
  if (pattern === undefined) return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: JSON escapes control characters.
  const runs = pattern.split(/[*?"\\/\u0000-\u001f]/);
  const longest = runs.reduce((best, run) => (run.length > best.length ? run : best), "");
  return longest === "" ? undefined : longest;
}

/**
 * The subject as one string, unambiguous: the route and method with their lengths, then which
 * of tool, prompt or resource is named and the name. Undefined when more than one is (no request
 * names two; such a subject is decided without the memo).
 */
function memoKey({ route, method, tool, prompt, resource }: Subject): string | undefined {
  const head = `${route.length}:${route}${method.length}:${method}`;
  if (tool !== undefined) return (prompt ?? resource) ? undefined : `${head}t${tool}`;
  if (prompt !== undefined) return resource !== undefined ? undefined : `${head}p${prompt}`;
  return resource !== undefined ? `${head}r${resource}` : head;
}

function matches(rule: Rule, subject: Subject): boolean {
  for (const [key, pattern] of rule.patterns) {
    const value = subjectValue(subject, key);
    if (value === undefined || !pattern.test(value)) return false;
  }
  if (rule.scope !== undefined) {
    const { scopes } = subject.principal;
    if (!scopes.includes(rule.scope) && !scopes.includes("*")) return false;
  }
  return true;
}

function subjectValue(subject: Subject, key: MatchKey): string | undefined {
  switch (key) {
    case "key_id":
      return subject.principal.keyId;
    case "oauth_client_id":
      return subject.principal.oauthClientId;
    case "sub":
      return subject.principal.sub;
    default:
      return subject[key];
  }
}

/** A glob: `*` any run of characters (`/` too), `?` one character; the rest literal. */
export function glob(pattern: string): RegExp {
  const source = pattern
    .split("")
    .map((char) =>
      char === "*" ? ".*" : char === "?" ? "." : char.replace(/[.+^${}()|[\]\\]/g, "\\$&"),
    )
    .join("");
  return new RegExp(`^${source}$`, "s");
}

/** Whether every request `later` matches is matched by `earlier` first. */
function covers(earlier: Rule, later: Rule): boolean {
  for (const key of MATCH_KEYS) {
    const pattern = earlier.config.match[key];
    if (pattern === undefined) continue;
    // Every request has a route and a method; the other attributes only some requests have.
    if (pattern === "*" && (key === "route" || key === "method")) continue;
    const theirs = later.config.match[key];
    if (theirs === undefined) return false;
    if (pattern !== "*" && !glob(pattern).test(theirs)) return false;
  }
  if (earlier.scope !== undefined && earlier.scope !== later.scope) return false;
  return true;
}
