/**
 * The slice of autocannon 9's programmatic API that bench/load.ts uses. The package ships no
 * types and @types/autocannon is not a dependency; fields follow autocannon's README and
 * lib/aggregateResult.js.
 */
declare module "autocannon" {
  namespace autocannon {
    interface Options {
      url: string;
      method?: "GET" | "POST";
      headers?: Record<string, string>;
      body?: string;
      connections?: number;
      /** Seconds. */
      duration?: number;
      /** Requests per second across all connections (open loop). */
      overallRate?: number;
      /** A number of requests to send instead of a duration. */
      amount?: number;
      /** Seconds before a request counts as timed out (and as an error). */
      timeout?: number;
      /** Bodies for which this returns false are counted in `mismatches`. */
      verifyBody?: (body: string) => boolean;
      /** A request sequence; `setupRequest` may rewrite each request before it is sent. */
      requests?: RequestSpec[];
    }

    interface RequestParams {
      method?: string;
      path?: string;
      headers: Record<string, string>;
      body?: string;
    }

    interface RequestSpec {
      setupRequest?: (request: RequestParams) => RequestParams;
    }

    /** hdr-histogram-percentiles-obj summary of a histogram. */
    interface Histogram {
      average: number;
      mean: number;
      stddev: number;
      min: number;
      max: number;
      p50: number;
      p99: number;
    }

    interface Result {
      /** Seconds, wall clock. */
      duration: number;
      /** Connection errors, timeouts included. */
      errors: number;
      timeouts: number;
      mismatches: number;
      non2xx: number;
      statusCodeStats: Record<string, { count: number }>;
      /** Requests per second, sampled once a second. */
      requests: Histogram & {
        /** Responses received. */
        total: number;
        /** Requests written, including those still in flight when the run stopped. */
        sent: number;
      };
      /** Milliseconds, recorded as whole milliseconds. */
      latency: Histogram;
    }

    interface Instance {
      stop(): void;
      on(
        event: "response",
        listener: (
          client: unknown,
          statusCode: number,
          bytes: number,
          responseTimeMs: number,
        ) => void,
      ): this;
    }
  }

  function autocannon(
    options: autocannon.Options,
    callback: (error: Error | null, result: autocannon.Result) => void,
  ): autocannon.Instance;

  export = autocannon;
}
