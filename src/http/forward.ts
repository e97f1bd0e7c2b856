/**
 * Pipeline step, the last: the request goes to the route's upstream and the answer streams
 * back. What the upstream answered (status, session id, event stream or not) is noted for the
 * audit line, metrics and the span as it arrives.
 */
import { performance } from "node:perf_hooks";
import type { Step } from "../pipeline/exchange.js";
import { UpstreamAuthError } from "../upstream/credentials.js";

export const forward: Step = (exchange, { metrics }) => {
  const { req, res, body, cancellation, route, record, trace, startedAt } = exchange;
  record.action = "allow";
  return route.upstream.forward({
    req,
    res,
    body,
    cancellation,
    transformResponse: exchange.transformResponse,
    headers: exchange.upstreamAuth?.headers,
    ...(trace && { startSpan: (target: URL) => trace.startUpstream(req.method as string, target) }),
    onResponse: (status, headers) => {
      trace?.upstreamResponded(status);
      if (status === 401 && exchange.upstreamAuth) {
        // About the gateway's credentials, not the client's: the client must not be sent to
        // log in again. The token is forgotten; the next request gets a new one.
        exchange.upstreamAuth.rejected();
        record.upstream_auth = "rejected";
        throw new UpstreamAuthError(
          "rejected",
          "the upstream refused the gateway's credentials (401)",
        );
      }
      metrics.upstreamResponded(route.path, (performance.now() - startedAt) / 1000);
      const sessionId = headers["mcp-session-id"];
      if (record.session_id === null && typeof sessionId === "string") {
        record.session_id = sessionId;
      }
      if (String(headers["content-type"]).startsWith("text/event-stream")) {
        metrics.streamOpened();
        exchange.streaming = true;
      }
    },
  });
};
