/**
 * The request pipeline of each route, as a list in one place. A route's list is built from its
 * config when the generation is built, so a step that a route does not need costs it nothing.
 * docs/architecture.md says where later steps (policy, rate limits, upstream credentials,
 * list filtering) go.
 */
import { requireWritableAudit } from "../audit/require-writable.js";
import { authenticate } from "../auth/authenticate-step.js";
import { requireScopes } from "../auth/required-scopes.js";
import { requireRouteBinding } from "../auth/route-binding.js";
import { GatewayError } from "../errors.js";
import { refuseForeignOrigin } from "../http/cors.js";
import { forward } from "../http/forward.js";
import { classifyEra, validateEra } from "../mcp/eras.js";
import { receiveMessage, refuseUnparsedBody } from "../mcp/receive.js";
import type { Policy } from "../policy/policy.js";
import { authorize } from "../policy/step.js";
import type { RouteSpec } from "../runtime/routes.js";
import type { Step } from "./exchange.js";

const refuseOtherMethods: Step = ({ req }) => {
  if (req.method !== "POST" && req.method !== "GET" && req.method !== "DELETE") {
    throw new GatewayError(
      "method_not_allowed",
      `${req.method} is not allowed on the MCP endpoint`,
    );
  }
};

/**
 * An MCP route's steps, in order: receive (Origin, method, body, protocol era), authenticate,
 * authorize (the key's route binding, required scopes), then what may only be said to an
 * authenticated caller (a body that is not JSON, headers that disagree with it, a revision the
 * route does not serve), the policy and rate limits, then the gateway's own credentials towards
 * the upstream (last before forward: a refused request never costs a token fetch), then forward.
 */
export function mcpSteps(
  route: Pick<RouteSpec, "minVersion">,
  policy?: Policy | undefined,
  rateLimit?: Step | undefined,
  upstreamCredentials?: Step | undefined,
): readonly Step[] {
  return [
    refuseForeignOrigin,
    refuseOtherMethods,
    receiveMessage,
    classifyEra,
    authenticate,
    requireRouteBinding,
    requireScopes,
    refuseUnparsedBody,
    validateEra(route.minVersion),
    ...(policy ? [authorize(policy)] : []),
    ...(rateLimit ? [rateLimit] : []),
    requireWritableAudit,
    ...(upstreamCredentials ? [upstreamCredentials] : []),
    forward,
  ];
}

/** A path no route has: 404, with an audit line like every other request. */
export const UNMATCHED_STEPS: readonly Step[] = [
  ({ req }) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    throw new GatewayError("not_found", `no route for ${path}`);
  },
];
