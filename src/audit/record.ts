/** One line of the audit log (contract: Audit log). Later capabilities add optional fields. */
import type { AuthResult, AuthType } from "../auth/principal.js";
import type { JsonRpcId } from "../mcp/jsonrpc.js";

export interface AuditRecord {
  ts: string;
  session_id: string | null;
  method: string | null;
  tool?: string;
  request_id: JsonRpcId;
  action: "allow" | "deny";
  auth_type: AuthType;
  auth_result: AuthResult;
  oauth_client_id?: string;
  sub?: string;
  key_id?: string;
  scopes?: string;
  status: number;
  latency_ms: number;
  trace_id?: string;
  remote_addr: string | null;
  /** Why the gateway, not the upstream, ended the exchange: see docs/errors.md. */
  error?: string;
}

/**
 * The record as one JSON line, fields in the contract's order whatever order the pipeline filled
 * them in, so that lines read the same with `tail` as with `jq`.
 */
export function formatAuditLine(record: AuditRecord): string {
  return `${JSON.stringify({
    ts: record.ts,
    session_id: record.session_id,
    method: record.method,
    tool: record.tool,
    request_id: record.request_id,
    action: record.action,
    auth_type: record.auth_type,
    auth_result: record.auth_result,
    oauth_client_id: record.oauth_client_id,
    sub: record.sub,
    key_id: record.key_id,
    scopes: record.scopes,
    status: record.status,
    latency_ms: record.latency_ms,
    trace_id: record.trace_id,
    remote_addr: record.remote_addr,
    error: record.error,
  })}\n`;
}
