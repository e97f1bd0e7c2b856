/** Pipeline step: the Authorization header -> the exchange's principal (or an AuthError). */
import { recordPrincipal } from "../audit/record.js";
import type { Exchange, Step } from "../pipeline/exchange.js";
import type { Principal } from "./principal.js";

export const authenticate: Step = (exchange) => {
  const result = exchange.route.authenticator.authenticate(exchange.req.headers.authorization);
  // A credential verified before answers at once; only a first verification waits.
  if (result instanceof Promise) return result.then((principal) => admit(exchange, principal));
  admit(exchange, result);
};

function admit(exchange: Exchange, principal: Principal): void {
  exchange.principal = principal;
  exchange.record.auth_result = "ok";
  recordPrincipal(exchange.record, principal);
}
