import { Outbound } from "../../src/lib/outbound.js";

/**
 * The `outbound` settings of test configs: the tests' identity providers, JWKS and token
 * endpoints listen on loopback, which the gateway refuses to fetch from by default.
 */
export const LOOPBACK_OUTBOUND = { allowed_networks: ["127.0.0.0/8", "::1"] };

/** A fetch guard for components built outside a gateway, allowing loopback as above. */
export function loopbackOutbound(): Outbound {
  return new Outbound({ allow_private_addresses: false, ...LOOPBACK_OUTBOUND });
}
