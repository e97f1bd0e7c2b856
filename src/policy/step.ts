/**
 * Pipeline step, after authentication, the route's required scopes and the protocol checks (so
 * that the tool it judges is the one the validated headers and the body agree on): the policy
 * decides, the audit line and span record which rule did, and a refusal ends the request. For
 * a list (tools, prompts, resources) the answer is filtered: a caller sees exactly what it may
 * call.
 */
import { ANONYMOUS, AuthError, type Principal } from "../auth/principal.js";
import { GatewayError } from "../errors.js";
import { isModernVersion } from "../mcp/eras.js";
import type { MessageTransform } from "../mcp/rewrite.js";
import type { Exchange, Step } from "../pipeline/exchange.js";
import { type Decision, missingScopes, type Policy, permits, type Subject } from "./policy.js";

/** What a list lists, and the call each item answers to. */
const LISTS: Readonly<
  Record<string, { field: string; method: string; key: "tool" | "prompt" | "resource"; id: string }>
> = {
  "tools/list": { field: "tools", method: "tools/call", key: "tool", id: "name" },
  "prompts/list": { field: "prompts", method: "prompts/get", key: "prompt", id: "name" },
  "resources/list": { field: "resources", method: "resources/read", key: "resource", id: "uri" },
};

export function authorize(policy: Policy): Step {
  return (exchange) => {
    const principal = exchange.principal ?? ANONYMOUS;
    const { record, route, req } = exchange;
    const decision = exchange.peek?.batch
      ? decideBatch(policy, exchange, principal)
      : policy.decide({
          route: route.path,
          method: record.method ?? req.method ?? "",
          tool: record.tool,
          prompt: record.prompt,
          resource: record.resource,
          principal,
        });
    record.rule = decision.rule;
    enforce(decision, principal);
    // Own members only: a method named `constructor` is no list.
    const list =
      record.method !== null && Object.hasOwn(LISTS, record.method)
        ? LISTS[record.method]
        : undefined;
    if (list && policy.mayRefuse(list.method)) {
      const modern = isModernVersion(exchange.peek?.protocolVersion);
      const filter = filterList(policy, route.path, principal, list, modern);
      const before = exchange.transformResponse;
      exchange.transformResponse = before ? (message) => filter(before(message)) : filter;
    }
  };
}

/** A refusal as the contract says: deny 403 with a JSON-RPC error; missing scopes the challenge. */
function enforce({ rule, effect }: Decision, principal: Principal): void {
  if (effect.kind === "allow") return;
  if (effect.kind === "deny") {
    throw new GatewayError("policy_denied", `denied by policy rule ${rule}`, { data: { rule } });
  }
  const missing = missingScopes(effect.scopes, principal);
  if (missing.length === 0) return;
  throw new AuthError(
    "insufficient_scope",
    `policy rule ${rule} requires the scope ${missing.join(" ")}`,
    {
      authType: principal.type,
      requiredScopes: effect.scopes,
      principal,
      jsonRpc: true,
    },
  );
}

/** A batch is allowed when every call in it is; the first refused one decides. */
function decideBatch(policy: Policy, exchange: Exchange, principal: Principal): Decision {
  let messages: unknown;
  try {
    messages = JSON.parse(exchange.body?.toString("utf8") ?? "[]");
  } catch {
    messages = [];
  }
  let allowed: Decision | undefined;
  for (const message of Array.isArray(messages) ? messages : []) {
    const { method, params } = (message ?? {}) as {
      method?: unknown;
      params?: Record<string, unknown>;
    };
    if (typeof method !== "string") continue;
    const subject: Subject = { route: exchange.route.path, method, principal };
    const list = Object.values(LISTS).find((entry) => entry.method === method);
    const named = list && params?.[list.id];
    if (list && typeof named === "string") subject[list.key] = named;
    const decision = policy.decide(subject);
    if (!permits(decision.effect, principal)) return decision;
    allowed ??= decision;
  }
  return allowed ?? policy.decide({ route: exchange.route.path, method: "batch", principal });
}

/** Keeps the items the caller may call; a 2026-07-28 answer becomes private to the caller. */
function filterList(
  policy: Policy,
  route: string,
  principal: Principal,
  list: (typeof LISTS)[string],
  modern: boolean,
): MessageTransform {
  const filter = (message: unknown) => {
    const result = (message as { result?: Record<string, unknown> }).result;
    const items = result?.[list.field];
    if (!result || !Array.isArray(items)) return message;
    const kept = items.filter((item) => {
      const name = (item as Record<string, unknown> | null)?.[list.id];
      if (typeof name !== "string") return false;
      const subject: Subject = { route, method: list.method, principal, [list.key]: name };
      return permits(policy.decide(subject).effect, principal);
    });
    const filtered: Record<string, unknown> = { ...result, [list.field]: kept };
    if (modern) filtered.cacheScope = "private";
    return { ...(message as object), result: filtered };
  };
  // A list that names nothing a rule could refuse is the same for every caller: sent as it is.
  const pattern = policy.refusalPattern(list.method, list.key);
  if (pattern === undefined) return filter;
  return Object.assign(filter, { leaves: (text: string) => !pattern.test(text) });
}
