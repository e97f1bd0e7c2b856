/**
 * Pipeline step: under `audit.on_error: fail_closed`, a request is refused (503
 * audit_unavailable) while the audit log cannot be written, so that nothing is forwarded
 * without its audit line. The refusal carries the write error as its cause, for the log.
 */
import { GatewayError } from "../errors.js";
import type { Step } from "../pipeline/exchange.js";

export const requireWritableAudit: Step = ({ generation }, { audit }) => {
  if (generation.config.audit.on_error === "fail_closed" && !audit.healthy) {
    throw new GatewayError(
      "audit_unavailable",
      "the audit log cannot be written; requests are refused (audit.on_error: fail_closed)",
      { cause: `${audit.path}: ${audit.failure ?? "write failed"}` },
    );
  }
};
