/** One line of the audit log (contract: Audit log). Later capabilities add optional fields. */
import type { AuthResult, AuthType, Principal } from "../auth/principal.js";
import type { JsonRpcId } from "../mcp/jsonrpc.js";

export interface AuditRecord {
  ts: string;
  /** The route's path; absent for a path no route has. */
  route?: string | undefined;
  session_id: string | null;
  method: string | null;
  tool?: string | undefined;
  /** `params.name` of a prompts/get. */
  prompt?: string | undefined;
  /** `params.uri` of a resources/read. */
  resource?: string | undefined;
  request_id: JsonRpcId;
  /** The gateway's id of the request, also in log lines and on the span (http/request-id.ts). */
  gateway_request_id: string;
  action: "allow" | "deny";
  /** The policy rule that decided (its id, or `default`), while a policy is configured. */
  rule?: string | undefined;
  auth_type: AuthType;
  auth_result: AuthResult;
  oauth_client_id?: string | undefined;
  sub?: string | undefined;
  key_id?: string | undefined;
  scopes?: string | undefined;
  status: number;
  latency_ms: number;
  trace_id?: string | undefined;
  remote_addr: string | null;
  /** The MCP revision the request named (`_meta` envelope, else MCP-Protocol-Version). */
  protocol_version?: string | undefined;
  /**
   * On a route with `upstream.auth`: `ok` when the gateway's credentials were sent, else why
   * there were none (`refused`, `server_error`, `timeout`, `unreachable`, `invalid_response`),
   * `rejected` when the upstream answered 401 to them, `connect_required` or `no_subject_token`.
   */
  upstream_auth?: string | undefined;
  /** Why the gateway, not the upstream, ended the exchange: see docs/errors.md. */
  error?: string | undefined;
}

/**
 * A record for a request starting now, every field present from the start in the contract's
 * order (absent ones `undefined`, which JSON leaves out): lines read the same with `tail` as
 * with `jq`, and the object keeps one shape however the pipeline fills it in.
 */
export function newAuditRecord(
  ts: string,
  gatewayRequestId: string,
  route: string | undefined,
  sessionId: string | null,
  method: string | null,
  remoteAddr: string | null,
): AuditRecord {
  return {
    ts,
    route,
    session_id: sessionId,
    method,
    tool: undefined,
    prompt: undefined,
    resource: undefined,
    request_id: null,
    gateway_request_id: gatewayRequestId,
    action: "deny",
    rule: undefined,
    auth_type: "none",
    auth_result: "missing",
    oauth_client_id: undefined,
    sub: undefined,
    key_id: undefined,
    scopes: undefined,
    status: 0,
    latency_ms: 0,
    trace_id: undefined,
    remote_addr: remoteAddr,
    protocol_version: undefined,
    upstream_auth: undefined,
    error: undefined,
  };
}

export function formatAuditLine(record: AuditRecord): string {
  return `${JSON.stringify(record)}\n`;
}

/** Writes who the caller is into the record: type, key id, OAuth subject and client, scopes. */
export function recordPrincipal(record: AuditRecord, principal: Principal): void {
  record.auth_type = principal.type;
  if (principal.keyId !== undefined) record.key_id = principal.keyId;
  if (principal.sub !== undefined) record.sub = principal.sub;
  if (principal.oauthClientId !== undefined) record.oauth_client_id = principal.oauthClientId;
  if (principal.scope !== "") record.scopes = principal.scope;
}
