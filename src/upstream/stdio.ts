/**
 * A stdio MCP server behind the gateway's Streamable HTTP endpoint: one child process per MCP
 * session, each bridged by the SDK's Streamable HTTP server transport. The transport answers
 * the HTTP side (sessions, SSE, DELETE); this module moves JSON-RPC messages between it and the
 * child's stdin/stdout, and owns the children's lives: start, idle timeout, crash, shutdown.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import { basename } from "node:path";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  isInitializeRequest,
  isJSONRPCErrorResponse,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { GatewayError } from "../errors.js";
import type { Logger } from "../log.js";
import { JSONRPC_SERVER_ERROR } from "../mcp/jsonrpc.js";
import type { MessageTransform } from "../mcp/rewrite.js";
import { logStderr, readMessages, spawnMcpServer, stopChild, writeMessage } from "./child.js";
import { isStatelessMessage, StatelessBridge } from "./stdio-stateless.js";
import type { ForwardRequest, Upstream, UpstreamStatus } from "./upstream.js";

export interface StdioUpstreamConfig {
  /** argv; `command[0]` is resolved on the child's PATH. */
  command: readonly string[];
  /** The child's whole environment, plus PATH (the gateway's own when the route sets none). */
  env: Readonly<Record<string, string>>;
  cwd?: string;
  /** Concurrent MCP sessions, that is children; more are refused with 503. */
  maxSessions: number;
  /** A session with no request for this long ends and its child is killed; 0: never. */
  idleTimeoutMs: number;
}

/** A child that ends unasked this soon after its start counts as a failed start. */
const STARTUP_MS = 5_000;
const BACKOFF_MAX_MS = 30_000;

interface Session {
  readonly child: ChildProcessWithoutNullStreams;
  readonly transport: StreamableHTTPServerTransport;
  readonly startedAt: number;
  /** Ids of client requests the child has not answered yet: answered with an error if it dies. */
  readonly pending: Set<RequestId>;
  /** The forward request's response transform, by the id of the request it answers. */
  readonly transforms: Map<RequestId, MessageTransform>;
  readonly exited: Promise<void>;
  idle: NodeJS.Timeout | undefined;
  initializeId: RequestId | undefined;
  initialized: boolean;
  /** The gateway ended the session (DELETE, idle, shutdown): the child's exit is no failure. */
  ending: boolean;
  ended: boolean;
}

/** A stdio MCP server run as one child process per MCP session. */
export class StdioUpstream implements Upstream {
  readonly #config: StdioUpstreamConfig;
  readonly #log: Logger;
  readonly #route: string;
  /** Names the command in spans; the argv may hold secrets, so only its basename. */
  readonly #target: URL;
  /** Sessions whose client holds an Mcp-Session-Id. */
  readonly #byId = new Map<string, Session>();
  /** Every session with a child, also while its initialize is in flight (counts for maxSessions). */
  readonly #live = new Set<Session>();
  /** 2026-07-28 clients: one child for all of them, started on first use. */
  readonly #stateless: StatelessBridge;
  #failures = 0;
  #backoffUntil = 0;
  #closed = false;

  constructor(config: StdioUpstreamConfig, deps: { log: Logger; route: string }) {
    this.#config = config;
    this.#log = deps.log;
    this.#route = deps.route;
    this.#target = new URL(`stdio:${encodeURIComponent(basename(config.command[0] ?? ""))}`);
    this.#stateless = new StatelessBridge(config, deps);
  }

  get sessions(): number {
    return this.#live.size;
  }

  status(): UpstreamStatus {
    return { sessions: this.#live.size };
  }

  async forward(request: ForwardRequest): Promise<void> {
    const { req, cancellation } = request;
    if (cancellation.reason) throw cancellation.reason;
    if (this.#closed) throw new GatewayError("shutting_down", "the stdio upstream is closed");
    const body = req.method === "POST" ? parseBody(request.body) : undefined;
    const sessionId = req.headers["mcp-session-id"];
    if (typeof sessionId === "string") {
      const session = this.#byId.get(sessionId);
      if (!session) throw new GatewayError("session_not_found", "no such MCP session");
      session.idle?.refresh();
      expectAnswers(session, body, request.transformResponse);
      return this.#relay(request, session.transport, body);
    }
    // A 2026-07-28 client has no session: the route's stateless bridge answers it.
    if (isStatelessMessage(body)) {
      request.startSpan?.(this.#target);
      return this.#stateless.forward(request, body);
    }
    // Without a session id only an initialize starts a session; a throwaway transport gives
    // the SDK's answer to anything else (400: not initialized), and no child is started.
    const messages: unknown[] = Array.isArray(body) ? body : [body];
    if (!messages.some(isInitializeRequest)) return this.#relay(request, newTransport(), body);
    const session = await this.#start();
    if (this.#closed) throw new GatewayError("shutting_down", "the stdio upstream is closed");
    if (cancellation.reason) {
      this.#end(session, "the request was cancelled");
      throw cancellation.reason;
    }
    expectAnswers(session, body, request.transformResponse);
    const relayed = this.#relay(request, session.transport, body);
    // An initialize the transport refused (in a batch, say) leaves a child no client can reach.
    const reap = () => {
      if (!session.transport.sessionId) this.#end(session, "the MCP session was not initialized");
    };
    relayed.then(reap, reap);
    return relayed;
  }

  /** Ends every session; resolves once every child has exited. */
  async close(): Promise<void> {
    this.#closed = true;
    const exits = [...this.#live].map((session) => {
      this.#end(session, "the gateway is shutting down");
      return session.exited;
    });
    await Promise.all([...exits, this.#stateless.close()]);
  }

  /** Hands one HTTP exchange to a session's transport; settles as the contract says. */
  #relay(request: ForwardRequest, transport: StreamableHTTPServerTransport, body: unknown) {
    const { req, res, cancellation, onResponse } = request;
    request.startSpan?.(this.#target);
    if (onResponse) observeHead(res, onResponse);
    return new Promise<void>((resolve, reject) => {
      res.once("finish", resolve);
      res.once("close", resolve);
      cancellation.onCancel(reject);
      transport.handleRequest(req, res, body).catch(reject);
    });
  }

  /** Spawns a child for a new session, unless the route is full or backing off. */
  async #start(): Promise<Session> {
    const left = this.#backoffUntil - Date.now();
    if (left > 0) {
      throw new GatewayError("upstream_busy", "the stdio MCP server keeps failing to start", {
        retryAfter: Math.ceil(left / 1000),
      });
    }
    if (this.#live.size >= this.#config.maxSessions) {
      throw new GatewayError("upstream_busy", "the stdio upstream is at its max_sessions");
    }
    const name = this.#config.command[0] ?? "";
    const child = spawnMcpServer(this.#config);
    const transport = newTransport((id) => this.#byId.set(id, session));
    const session: Session = {
      child,
      transport,
      startedAt: Date.now(),
      pending: new Set(),
      transforms: new Map(),
      // 'close' alone when the command never started; 'exit' even if a grandchild holds the pipes.
      exited: new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.once("close", () => resolve());
      }),
      idle: undefined,
      initializeId: undefined,
      initialized: false,
      ending: false,
      ended: false,
    };
    this.#live.add(session);
    try {
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", resolve);
        child.once("error", reject);
      });
    } catch (error) {
      this.#live.delete(session);
      this.#failed();
      const message = `stdio upstream: cannot start "${name}": ${(error as Error).message}`;
      this.#log.error({ route: this.#route, command: name }, message);
      throw new GatewayError("upstream_unreachable", message, { cause: error });
    }
    // close() may have ended the session while the child was starting.
    if (!session.ended) this.#wire(session);
    return session;
  }

  /** Connects a started child to its transport and watches its life. */
  #wire(session: Session): void {
    const { child, transport, pending } = session;
    const pid = child.pid;
    child.on("error", (error) => this.#log.warn({ route: this.#route, pid, err: error }));
    transport.onmessage = (message) => {
      if (isJSONRPCRequest(message)) {
        pending.add(message.id);
        if (message.method === "initialize") session.initializeId = message.id;
      }
      writeMessage(child, message);
    };
    transport.onclose = () => this.#end(session, "the MCP session ended");
    readMessages(child, (message) => this.#fromChild(session, message), this.#log, this.#route);
    logStderr(child, this.#log, this.#route);
    // A grandchild that inherited the pipes must not keep an exited child's session open.
    child.once("exit", () => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 1000).unref();
    });
    // 'close', not 'exit': the child's last stdout lines are read before its session ends.
    child.once("close", (code, signal) => {
      const unasked = !session.ending;
      if (unasked)
        this.#log.warn({ route: this.#route, pid, code, signal }, "stdio MCP server exited");
      const early = Date.now() - session.startedAt < STARTUP_MS;
      if (unasked && early && (code !== 0 || !session.initialized)) this.#failed();
      const status = signal ? `signal ${signal}` : `code ${code}`;
      this.#end(session, `the stdio MCP server exited (${status})`);
    });
    if (this.#config.idleTimeoutMs > 0) {
      session.idle = setTimeout(() => {
        // A long tool call is not idleness: wait for its answer.
        if (session.pending.size > 0) session.idle?.refresh();
        else this.#end(session, "the MCP session was idle");
      }, this.#config.idleTimeoutMs).unref();
    }
  }

  #fromChild(session: Session, received: JSONRPCMessage): void {
    let message = received;
    if (isJSONRPCResultResponse(received) || isJSONRPCErrorResponse(received)) {
      const { id } = received;
      if (id === undefined || !session.pending.delete(id)) return;
      if (id === session.initializeId && "result" in received) {
        session.initialized = true;
        this.#failures = 0;
      }
      const transform = session.transforms.get(id);
      if (transform) {
        session.transforms.delete(id);
        message = transform(received) as JSONRPCMessage;
      }
    }
    // Responses go to the stream of their request; the rest to the session's GET stream.
    session.transport.send(message).catch((error: unknown) => {
      this.#log.debug({ route: this.#route, pid: session.child.pid, err: error }, "not delivered");
    });
  }

  /** A failed start: new sessions wait 1 s, 2 s, 4 s … up to 30 s. */
  #failed(): void {
    this.#failures += 1;
    const delay = Math.min(1000 * 2 ** (this.#failures - 1), BACKOFF_MAX_MS);
    this.#backoffUntil = Date.now() + delay;
  }

  /** Answers what the child still owes, closes the transport and stops the child. Idempotent. */
  #end(session: Session, reason: string): void {
    if (session.ended) return;
    session.ended = true;
    session.ending = true;
    clearTimeout(session.idle);
    this.#live.delete(session);
    const { transport, child } = session;
    if (transport.sessionId) this.#byId.delete(transport.sessionId);
    for (const id of session.pending) {
      const error = { code: JSONRPC_SERVER_ERROR, message: reason };
      transport.send({ jsonrpc: "2.0", id, error }).catch(() => {});
    }
    session.pending.clear();
    session.transforms.clear();
    void transport.close();
    stopChild(child);
  }
}

/** Notes the transform of the answers to the requests in `body`, by their ids. */
function expectAnswers(
  session: Session,
  body: unknown,
  transform: MessageTransform | undefined,
): void {
  if (transform === undefined) return;
  for (const message of Array.isArray(body) ? body : [body]) {
    if (isJSONRPCRequest(message)) session.transforms.set(message.id, transform);
  }
}

function newTransport(onInitialized?: (sessionId: string) => void): StreamableHTTPServerTransport {
  return new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    ...(onInitialized && { onsessioninitialized: onInitialized }),
  });
}

/** The gateway has read the body already; the transport takes it parsed. */
function parseBody(body: Buffer | undefined): unknown {
  try {
    return JSON.parse(body?.toString("utf8") ?? "");
  } catch (error) {
    throw new GatewayError("parse_error", "the request body is not JSON", { cause: error });
  }
}

/**
 * Shows the status and headers to `onResponse` just before they are sent. The transport writes
 * them through `res.writeHead(status, headers)`; what `onResponse` leaves is what is sent.
 */
function observeHead(res: ServerResponse, onResponse: NonNullable<ForwardRequest["onResponse"]>) {
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  let seen = false;
  res.writeHead = ((status: number, ...rest: unknown[]) => {
    if (seen) return writeHead(status, ...rest);
    seen = true;
    const given = rest.find((arg) => typeof arg === "object" && arg !== null);
    const headers: IncomingHttpHeaders = {};
    for (const [name, value] of headerEntries(given)) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
    }
    onResponse(status, headers);
    const message = typeof rest[0] === "string" ? rest[0] : undefined;
    return message === undefined ? writeHead(status, headers) : writeHead(status, message, headers);
  }) as ServerResponse["writeHead"];
}

/** writeHead takes an object, or an array of [name, value] pairs or of alternating entries. */
function headerEntries(given: unknown): [string, unknown][] {
  if (!given) return [];
  if (!Array.isArray(given)) return Object.entries(given).filter(([, v]) => v !== undefined);
  if (given.every(Array.isArray)) return given as [string, unknown][];
  const entries: [string, unknown][] = [];
  for (let i = 0; i + 1 < given.length; i += 2) entries.push([String(given[i]), given[i + 1]]);
  return entries;
}
