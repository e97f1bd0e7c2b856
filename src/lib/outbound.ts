/**
 * The fetches the gateway makes itself, on its users' behalf: an OAuth issuer's JWKS, upstream
 * token endpoints, and the sign-in provider's discovery, keys and token endpoint. One guard
 * for all of them (SSRF):
 *
 * - **Addresses.** A connection to a loopback, private, link-local or other special-use address
 *   is refused unless the config's `outbound` settings allow it. The check is on the connected
 *   socket's address, so it holds for literal IPs and for every name a resolver may return
 *   (no window for DNS rebinding between a check and the connect). No request is sent on a
 *   refused connection; for https, the TLS handshake has taken place.
 * - **Redirects.** Never to another origin; for GETs that allow them, at most
 *   {@link MAX_REDIRECTS} on the same origin; POSTs follow none.
 * - **Size.** The body is read up to a limit and the connection cut beyond it.
 * - **Time.** One deadline for the whole exchange, body and redirects included.
 *
 * The answer is a standard `Response` whose body has been read in full, so callers parse it as
 * they would a fetch's.
 */
import { Agent, buildConnector, request } from "undici";
import { AllowedAddresses, type OutboundSettings } from "./addresses.js";

/** Same-origin redirects a GET may follow. */
export const MAX_REDIRECTS = 3;

export type { OutboundSettings } from "./addresses.js";

export type OutboundFailure = "address" | "redirect" | "too_large" | "timeout" | "unreachable";

/** A fetch refused or failed by the guard; `message` names the URL and never a secret. */
export class OutboundError extends Error {
  constructor(
    readonly reason: OutboundFailure,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "OutboundError";
  }
}

export interface OutboundRequest {
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string | URLSearchParams;
  /** Deadline for the whole exchange. */
  timeoutMs: number;
  /** Largest body read; a longer one fails with `too_large`. */
  maxBytes: number;
  /** Follow same-origin redirects (GET only); otherwise any redirect fails. */
  followRedirects?: boolean;
  signal?: AbortSignal;
}

/**
 * The guard of one config's `outbound` settings, with its own connection pool. `key` names the
 * settings, so components that fetch can be kept by a reload that leaves them as they were.
 */
export class Outbound {
  readonly key: string;
  readonly #allowed: AllowedAddresses;
  readonly #agent: Agent;

  constructor(settings: OutboundSettings) {
    this.#allowed = new AllowedAddresses(settings);
    this.key = Outbound.keyOf(settings);
    const connect = buildConnector({});
    this.#agent = new Agent({
      keepAliveTimeout: 4_000,
      connect: (options, callback) => {
        connect(options, (error, socket) => {
          if (error !== null) return callback(error, null);
          const address = socket.remoteAddress ?? "";
          if (this.#allowed.allows(address)) return callback(null, socket);
          socket.destroy();
          const host = options.hostname.replace(/^\[(.*)\]$/, "$1");
          const what = host === address ? `${address} is` : `${host} is at ${address},`;
          callback(
            new OutboundError(
              "address",
              `${what} a loopback, private or link-local address: allow it with outbound.allowed_networks`,
            ),
            null,
          );
        });
      },
    });
  }

  /** Names `settings`: equal keys guard alike. */
  static keyOf(settings: OutboundSettings): string {
    return JSON.stringify([settings.allow_private_addresses, settings.allowed_networks]);
  }

  /** One guarded exchange: see the module's comment. Fails with an {@link OutboundError}. */
  async fetch(url: string, init: OutboundRequest): Promise<Response> {
    const deadline = AbortSignal.timeout(init.timeoutMs);
    const signal = init.signal ? AbortSignal.any([deadline, init.signal]) : deadline;
    const method = init.method ?? "GET";
    let target = new URL(url);
    for (let redirects = 0; ; redirects++) {
      const answer = await this.#exchange(target, method, init, signal, deadline);
      if (answer.status < 300 || answer.status >= 400 || answer.status === 304) {
        return new Response(
          answer.status === 204 || answer.body.length === 0 ? null : new Uint8Array(answer.body),
          { status: answer.status, headers: answer.headers },
        );
      }
      const location = answer.headers.get("location");
      if (location === null) {
        throw new OutboundError(
          "redirect",
          `${method} ${where(target)}: HTTP ${answer.status} without Location`,
        );
      }
      const next = new URL(location, target);
      if (!init.followRedirects || method !== "GET") {
        throw new OutboundError(
          "redirect",
          `${method} ${where(target)}: redirected to ${next.origin}${next.pathname}, and this fetch follows no redirect`,
        );
      }
      if (next.origin !== target.origin) {
        throw new OutboundError(
          "redirect",
          `GET ${where(target)}: redirected to another origin (${next.origin}), refused`,
        );
      }
      if (redirects === MAX_REDIRECTS) {
        throw new OutboundError(
          "redirect",
          `GET ${where(new URL(url))}: more than ${MAX_REDIRECTS} redirects`,
        );
      }
      target = next;
    }
  }

  async #exchange(
    target: URL,
    method: "GET" | "POST",
    init: OutboundRequest,
    signal: AbortSignal,
    deadline: AbortSignal,
  ): Promise<{ status: number; headers: Headers; body: Buffer }> {
    const body = init.body instanceof URLSearchParams ? init.body.toString() : init.body;
    const headers = { ...init.headers };
    if (init.body instanceof URLSearchParams) {
      headers["content-type"] ??= "application/x-www-form-urlencoded";
    }
    const timedOut = () =>
      new OutboundError(
        "timeout",
        `${method} ${where(target)}: timed out, no complete answer within ${init.timeoutMs} ms`,
      );
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(target, {
        dispatcher: this.#agent,
        method,
        headers,
        ...(body !== undefined && { body }),
        signal,
      });
    } catch (error) {
      if (deadline.aborted) throw timedOut();
      if (error instanceof OutboundError) {
        throw new OutboundError(error.reason, `${method} ${where(target)}: ${error.message}`);
      }
      if (signal.aborted) throw error;
      throw new OutboundError("unreachable", `${method} ${where(target)}: ${describe(error)}`, {
        cause: error,
      });
    }
    const declared = Number(response.headers["content-length"]);
    if (declared > init.maxBytes) {
      response.body.destroy();
      throw tooLarge(method, target, init.maxBytes);
    }
    const chunks: Buffer[] = [];
    let length = 0;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        length += chunk.length;
        if (length > init.maxBytes) {
          response.body.destroy();
          throw tooLarge(method, target, init.maxBytes);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      if (error instanceof OutboundError) throw error;
      if (deadline.aborted) throw timedOut();
      if (signal.aborted) throw error;
      throw new OutboundError("unreachable", `${method} ${where(target)}: ${describe(error)}`, {
        cause: error,
      });
    }
    const answerHeaders = new Headers();
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) answerHeaders.append(name, one);
    }
    return { status: response.statusCode, headers: answerHeaders, body: Buffer.concat(chunks) };
  }

  /** Closes the pooled connections. */
  close(): Promise<void> {
    return this.#agent.close();
  }
}

function tooLarge(method: string, target: URL, maxBytes: number): OutboundError {
  return new OutboundError(
    "too_large",
    `${method} ${where(target)}: the answer exceeds ${maxBytes} bytes`,
  );
}

/** A URL as errors show it: no credentials, no query. */
function where(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const code = (error as { code?: string }).code ?? cause?.code;
  const message = (error as Error).message ?? String(error);
  return code && !message.includes(code) ? `${message} (${code})` : message;
}
