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
import { receiveMessage, refuseUnparsedBody } from "../mcp/receive.js";
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
 * An MCP route's steps, in order: receive (Origin, method, body), authenticate, authorize (the
 * key's route binding, required scopes), then what may only be said to an authenticated caller,
 * then forward.
 */
const MCP_STEPS: readonly Step[] = [
  refuseForeignOrigin,
  refuseOtherMethods,
  receiveMessage,
  authenticate,
  requireRouteBinding,
  requireScopes,
  refuseUnparsedBody,
  requireWritableAudit,
  forward,
];

/** The steps of one route. Every route has the same list today; later steps depend on config. */
export function mcpSteps(_route: { path: string }): readonly Step[] {
  return MCP_STEPS;
}

/** A path no route has: 404, with an audit line like every other request. */
export const UNMATCHED_STEPS: readonly Step[] = [
  ({ req }) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    throw new GatewayError("not_found", `no route for ${path}`);
  },
];
