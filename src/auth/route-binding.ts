/**
 * Pipeline step, after authentication: an API key bound to routes (`auth.keys[].routes`) is
 * valid only there. On another route it is answered like a token for another audience: 401
 * invalid_token, audit `auth_result: wrong_route`.
 */
import type { Step } from "../pipeline/exchange.js";
import { AuthError } from "./principal.js";

export const requireRouteBinding: Step = ({ principal, route }) => {
  const bound = principal?.routes;
  if (bound === undefined || bound.includes(route.path)) return;
  throw new AuthError("wrong_route", `this key is not valid for ${route.path}`, {
    authType: principal?.type ?? "api_key",
    ...(principal && { principal }),
  });
};
