/**
 * One closed-loop load phase: autocannon's connections each send a request, wait for the
 * response and send the next, for a fixed time.
 */
import { createHistogram } from "node:perf_hooks";
import autocannon from "autocannon";

export interface LoadPhase {
  url: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  durationSeconds: number;
  /** Checked on every response when given; failures count as mismatches. */
  verifyBody?: (body: string) => boolean;
  /** When given, each request's Authorization header comes from it (a fresh token each time). */
  authorization?: () => string;
  /** Requests per second across all connections (open loop); unset, as fast as answered. */
  overallRate?: number;
}

export interface LoadOutcome {
  /** Requests written, including those cut off in flight when the phase ended. */
  sent: number;
  /** Responses received. */
  completed: number;
  /** Connection errors and timeouts. */
  errors: number;
  non2xx: number;
  mismatches: number;
  /** Responses per status code, to explain a non-zero non2xx. */
  statusCounts: Record<string, number>;
  /** Mean of the once-a-second samples. */
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

/**
 * autocannon keeps latencies in whole milliseconds, which rounds a sub-millisecond loopback
 * round trip to 0 or 1; its per-response event carries the exact time, so the percentiles are
 * taken from a microsecond histogram fed by that event instead.
 */
export function runLoad(phase: LoadPhase): Promise<LoadOutcome> {
  const latencyMicros = createHistogram();
  return new Promise((resolve, reject) => {
    const options: autocannon.Options = {
      url: phase.url,
      method: "POST",
      headers: phase.headers,
      body: phase.body,
      connections: phase.connections,
      duration: phase.durationSeconds,
    };
    if (phase.verifyBody) options.verifyBody = phase.verifyBody;
    if (phase.overallRate !== undefined) options.overallRate = phase.overallRate;
    const { authorization } = phase;
    if (authorization) {
      options.requests = [
        {
          setupRequest: (request) => ({
            ...request,
            headers: { ...request.headers, authorization: authorization() },
          }),
        },
      ];
    }
    const instance = autocannon(options, (error, result) => {
      if (error) {
        reject(error);
        return;
      }
      const statusCounts: Record<string, number> = {};
      for (const [status, { count }] of Object.entries(result.statusCodeStats)) {
        statusCounts[status] = count;
      }
      const answered = latencyMicros.count > 0;
      resolve({
        sent: result.requests.sent,
        completed: result.requests.total,
        errors: result.errors,
        non2xx: result.non2xx,
        mismatches: result.mismatches,
        statusCounts,
        requestsPerSecond: result.requests.average,
        latencyP50Ms: answered ? latencyMicros.percentile(50) / 1000 : Number.NaN,
        latencyP99Ms: answered ? latencyMicros.percentile(99) / 1000 : Number.NaN,
      });
    });
    instance.on("response", (_client, _status, _bytes, responseTimeMs) => {
      latencyMicros.record(Math.max(1, Math.round(responseTimeMs * 1000)));
    });
  });
}

/** Why a phase's numbers cannot be trusted, or undefined when every request succeeded. */
export function loadFailure(outcome: LoadOutcome): string | undefined {
  const problems: string[] = [];
  if (outcome.completed === 0) problems.push("no response at all");
  if (outcome.errors > 0) problems.push(`${outcome.errors} connection errors or timeouts`);
  if (outcome.non2xx > 0) {
    const statuses = Object.entries(outcome.statusCounts)
      .filter(([status]) => !status.startsWith("2"))
      .map(([status, count]) => `${count} × ${status}`)
      .join(", ");
    problems.push(`${outcome.non2xx} non-2xx responses (${statuses})`);
  }
  if (outcome.mismatches > 0) problems.push(`${outcome.mismatches} unexpected response bodies`);
  return problems.length > 0 ? problems.join("; ") : undefined;
}
