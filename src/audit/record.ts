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
