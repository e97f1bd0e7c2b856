/**
 * The gateway's own id for a request: the same value in the audit line
 * (`gateway_request_id`), in every log line about the request and on its span
 * (`mcpgw.request.id`), so an operator can go from one to the others. The JSON-RPC id cannot
 * serve: clients reuse it, and GET and DELETE requests have none.
 *
 * A random prefix drawn once per process, then a counter: unique across restarts and replicas
 * (48 random bits), and a request pays for a counter increment, not a CSPRNG draw.
 */
import { randomBytes } from "node:crypto";

const PROCESS_PREFIX = randomBytes(6).toString("base64url");
let counter = 0;

/** `k3Xq9aZ1-2s`: 8 characters of the process, then the request's number in base 36. */
export function newGatewayRequestId(): string {
  counter++;
  return `${PROCESS_PREFIX}-${counter.toString(36)}`;
}
