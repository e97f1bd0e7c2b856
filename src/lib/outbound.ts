/**
 * The fetches the gateway makes itself, on its users' behalf: an OAuth issuer's JWKS, upstream
 * token endpoints, and the sign-in provider's discovery, keys and token endpoint. One guard
 * for all of them (SSRF):
 *
 * - **Addresses.** A connection to a loopback, private, link-local or other special-use address
 *   is refused unless the config's `outbound` settings allow it. The check is on the connected
 *   socket's address, so it holds for literal IPs and for every name a resolver may return
 *   (no window for DNS rebinding between a check and the connect).
 * - **Redirects.** Never to another origin; for GETs that allow them, at most
 *   {@link MAX_REDIRECTS} on the same origin; POSTs follow none.
 * - **Size.** The body is read up to a limit and the connection cut beyond it.
 * - **Time.** One deadline for the whole exchange, body and redirects included.
 *
 * The answer is a standard `Response` whose body has been read in full, so callers parse it as
 * they would a fetch's.
 */
import { BlockList, isIP } from "node:net";
import { Agent, buildConnector, request } from "undici";
import { parseAddressRange } from "../config/schema.js";

/** Same-origin redirects a GET may follow. */
export const MAX_REDIRECTS = 3;

export interface OutboundSettings {
  /** Connect to loopback, private and link-local addresses too. */
  allow_private_addresses: boolean;
  /** CIDRs (`10.20.0.0/16`, `127.0.0.1/32`, `fd00::/8`) allowed although special-use. */
  allowed_networks: readonly string[];
}

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
 * Special-use ranges (IANA's IPv4 and IPv6 special-purpose registries, the ones a fetch must not
 * reach by default): "this network", private, shared (CGNAT), loopback, link-local (cloud
 * metadata services live there), IETF protocol assignments, benchmarking, multicast, reserved;
 * IPv6 unspecified, loopback, NAT64, discard, unique local, link-local, multicast. IPv4-mapped
 * IPv6 addresses are checked as the IPv4 address they carry.
 */
const SPECIAL_USE: readonly [string, number, "ipv4" | "ipv6"][] = [
  ["0.0.0.0", 8, "ipv4"],
  ["10.0.0.0", 8, "ipv4"],
  ["100.64.0.0", 10, "ipv4"],
  ["127.0.0.0", 8, "ipv4"],
  ["169.254.0.0", 16, "ipv4"],
  ["172.16.0.0", 12, "ipv4"],
  ["192.0.0.0", 24, "ipv4"],
  ["192.168.0.0", 16, "ipv4"],
  ["198.18.0.0", 15, "ipv4"],
  ["224.0.0.0", 4, "ipv4"],
  ["240.0.0.0", 4, "ipv4"],
  ["::", 128, "ipv6"],
  ["::1", 128, "ipv6"],
  ["64:ff9b::", 96, "ipv6"],
  ["64:ff9b:1::", 48, "ipv6"],
  ["100::", 64, "ipv6"],
  ["fc00::", 7, "ipv6"],
  ["fe80::", 10, "ipv6"],
  ["ff00::", 8, "ipv6"],
];

const specialUse = new BlockList();
for (const [network, prefix, family] of SPECIAL_USE) specialUse.addSubnet(network, prefix, family);

/** Whether `address` (an IP as a socket reports it) is loopback, private or otherwise special. */
export function isSpecialUseAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return specialUse.check(address, family === 4 ? "ipv4" : "ipv6");
}

/**
 * The guard of one config's `outbound` settings, with its own connection pool. `key` names the
 * settings, so components that fetch can be kept by a reload that leaves them as they were.
 */
export class Outbound {
  readonly key: string;
  readonly #allowAll: boolean;
  readonly #allowed = new BlockList();
  readonly #agent: Agent;

  constructor(settings: OutboundSettings) {
    this.#allowAll = settings.allow_private_addresses;
    for (const text of settings.allowed_networks) {
      const range = parseAddressRange(text);
      if (range === undefined) throw new Error(`outbound.allowed_networks: ${text} is not a range`);
      this.#allowed.addSubnet(...range);
    }
    this.key = Outbound.keyOf(settings);
    const connect = buildConnector({});
    this.#agent = new Agent({
      keepAliveTimeout: 4_000,
      connect: (options, callback) => {
        connect(options, (error, socket) => {
          if (error !== null) return callback(error, null);
          const address = socket.remoteAddress ?? "";
          if (this.allows(address)) return callback(null, socket);
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

  /** Whether a connection to `address` may be used. */
  allows(address: string): boolean {
    if (this.#allowAll || !isSpecialUseAddress(address)) return true;
    const family = isIP(address);
    if (family === 0) return false;
    return this.#allowed.check(address, family === 4 ? "ipv4" : "ipv6");
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
