/**
 * 2026-07-28 clients on a stdio route. A stdio server of the session era expects one client
 * that opens with `initialize`; stateless clients send independent requests with no session.
 * So the route keeps one child for them, which the gateway itself initializes (2025-11-25),
 * and every stateless request is a request of the gateway to that child under an id of the
 * gateway's own, answered to its client when the child answers. The bridge also speaks the
 * parts of the new era that the child cannot: `server/discover` is answered from the child's
 * initialize result, `subscriptions/listen` streams the child's list-changed notifications,
 * and progress notifications reach the request whose `progressToken` they carry.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import type { ServerResponse } from "node:http";
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type JSONRPCRequest,
} from "@modelcontextprotocol/sdk/types.js";
import { GatewayError } from "../errors.js";
import type { Logger } from "../log.js";
import { FIRST_MODERN_VERSION } from "../mcp/eras.js";
import { JSONRPC_SERVER_ERROR } from "../mcp/jsonrpc.js";
import { version } from "../version.js";
import {
  type ChildCommand,
  logStderr,
  readMessages,
  spawnMcpServer,
  stopChild,
  writeMessage,
} from "./child.js";
import type { ForwardRequest } from "./upstream.js";

/** The revision the gateway speaks to the child. */
const CHILD_VERSION = "2025-11-25";
const METHOD_NOT_FOUND = -32601;
const INVALID_REQUEST = -32600;

interface Child {
  process: ChildProcessWithoutNullStreams;
  /** The child's initialize result: what server/discover answers. */
  initialized: Promise<InitializeResult>;
}

interface InitializeResult {
  capabilities?: Record<string, unknown>;
  serverInfo?: Record<string, unknown>;
  instructions?: string;
}

type Answer = (message: JSONRPCMessage) => void;

export class StatelessBridge {
  readonly #command: ChildCommand;
  readonly #log: Logger;
  readonly #route: string;
  #child: Child | undefined;
  #nextId = 1;
  /** The clients waiting for the child's answer, by the gateway's id of their request. */
  readonly #waiting = new Map<number, Answer>();
  /** Where a progress notification goes, by its progressToken. */
  readonly #progress = new Map<string | number, Answer>();
  /** Open subscriptions/listen streams. */
  readonly #listeners = new Set<Answer>();

  constructor(command: ChildCommand, deps: { log: Logger; route: string }) {
    this.#command = command;
    this.#log = deps.log;
    this.#route = deps.route;
  }

  /** Answers one stateless request (a parsed single message; batches are not of this era). */
  async forward(request: ForwardRequest, message: unknown): Promise<void> {
    const { res } = request;
    if (Array.isArray(message) || !(isJSONRPCRequest(message) || isJSONRPCNotification(message))) {
      reply(
        request,
        400,
        error(null, INVALID_REQUEST, "a 2026-07-28 request is one JSON-RPC message"),
      );
      return;
    }
    if (isJSONRPCNotification(message)) {
      const child = await this.#started();
      writeMessage(child.process, message);
      respond(request, 202, {});
      res.end();
      return;
    }
    const call = message as JSONRPCRequest;
    const { id } = call;
    switch (call.method) {
      case "server/discover": {
        const init = await (await this.#started()).initialized;
        const result = modernResult("server/discover", discoverResult(init));
        reply(request, 200, { jsonrpc: "2.0", id, result });
        return;
      }
      case "subscriptions/listen":
        await this.#started();
        return this.#listen(request);
      default:
        return this.#call(request, call);
    }
  }

  /** Stops the child; stateless requests still waiting are answered with an error. */
  close(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    this.#failAll("the gateway is shutting down");
    if (!child) return Promise.resolve();
    const exited = new Promise<void>((resolve) => {
      if (child.process.exitCode !== null || child.process.signalCode !== null) resolve();
      else child.process.once("exit", () => resolve());
    });
    stopChild(child.process);
    return exited;
  }

  /** One request to the child under the gateway's own id, its answer back under the client's. */
  async #call(request: ForwardRequest, message: JSONRPCRequest): Promise<void> {
    const child = await this.#started();
    await child.initialized;
    const own = this.#nextId++;
    const token = (message.params?._meta as { progressToken?: string | number } | undefined)
      ?.progressToken;
    // With a progress token the answer is a stream, so that progress can precede the result.
    const stream = token !== undefined ? openStream(request) : undefined;
    const answered = new Promise<JSONRPCMessage>((resolve) => {
      this.#waiting.set(own, resolve);
      if (token !== undefined && stream) this.#progress.set(token, stream);
    });
    request.cancellation.onCancel(() => {
      this.#waiting.delete(own);
      if (token !== undefined) this.#progress.delete(token);
    });
    writeMessage(child.process, { ...message, id: own });
    const answer = await answered;
    if (token !== undefined) this.#progress.delete(token);
    const theirs = (
      isJSONRPCResultResponse(answer)
        ? { ...answer, id: message.id, result: modernResult(message.method, answer.result) }
        : { ...answer, id: message.id }
    ) as JSONRPCMessage;
    const transformed = (request.transformResponse?.(theirs) ?? theirs) as JSONRPCMessage;
    if (stream) {
      stream(transformed);
      request.res.end();
    } else {
      reply(request, 200, transformed);
    }
  }

  /** A stream of the child's notifications that concern every client: lists changed, updates. */
  #listen(request: ForwardRequest): Promise<void> {
    const send = openStream(request);
    this.#listeners.add(send);
    return new Promise((resolve) => {
      const stop = () => {
        this.#listeners.delete(send);
        resolve();
      };
      request.res.once("close", stop);
      request.cancellation.onCancel(stop);
    });
  }

  /** The running child, started and initialized on first use and after it exited. */
  #started(): Promise<Child> {
    if (this.#child) return Promise.resolve(this.#child);
    const process = spawnMcpServer(this.#command);
    return new Promise<Child>((resolve, reject) => {
      process.once("error", (cause) => {
        this.#child = undefined;
        const message = `stdio upstream: cannot start "${this.#command.command[0]}": ${cause.message}`;
        this.#log.error({ route: this.#route, command: this.#command.command[0] }, message);
        reject(new GatewayError("upstream_unreachable", message, { cause }));
      });
      process.once("spawn", () => {
        const child: Child = { process, initialized: this.#initialize(process) };
        this.#child = child;
        resolve(child);
      });
      readMessages(process, (message) => this.#fromChild(process, message), this.#log, this.#route);
      logStderr(process, this.#log, this.#route);
      process.once("exit", (code, signal) => {
        if (this.#child?.process === process) this.#child = undefined;
        this.#log.warn(
          { route: this.#route, pid: process.pid, code, signal },
          "stdio MCP server for stateless clients exited",
        );
        this.#failAll(
          `the stdio MCP server exited (${signal ? `signal ${signal}` : `code ${code}`})`,
        );
      });
    });
  }

  /** The session-era handshake, done once by the gateway for all stateless clients. */
  #initialize(process: ChildProcessWithoutNullStreams): Promise<InitializeResult> {
    const own = this.#nextId++;
    const done = new Promise<JSONRPCMessage>((resolve) => this.#waiting.set(own, resolve));
    writeMessage(process, {
      jsonrpc: "2.0",
      id: own,
      method: "initialize",
      params: {
        protocolVersion: CHILD_VERSION,
        capabilities: {},
        clientInfo: { name: "mcpgw", version: version() },
      },
    });
    return done.then((answer) => {
      if (!isJSONRPCResultResponse(answer)) {
        throw new GatewayError("upstream_unreachable", "the stdio MCP server refused initialize");
      }
      writeMessage(process, { jsonrpc: "2.0", method: "notifications/initialized" });
      return answer.result as InitializeResult;
    });
  }

  #fromChild(process: ChildProcessWithoutNullStreams, message: JSONRPCMessage): void {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      const own = Number(message.id);
      const answer = this.#waiting.get(own);
      this.#waiting.delete(own);
      answer?.(message);
      return;
    }
    if (isJSONRPCRequest(message)) {
      // Stateless clients cannot be asked anything on a stream: ping is answered, the rest
      // (sampling, elicitation, roots) refused, so that the child does not wait forever.
      writeMessage(
        process,
        message.method === "ping"
          ? { jsonrpc: "2.0", id: message.id, result: {} }
          : error(
              message.id,
              METHOD_NOT_FOUND,
              `${message.method} is not available to stateless clients`,
            ),
      );
      return;
    }
    if (message.method === "notifications/progress") {
      const token = (message.params as { progressToken?: string | number } | undefined)
        ?.progressToken;
      if (token !== undefined) this.#progress.get(token)?.(message);
      return;
    }
    for (const send of this.#listeners) send(message);
  }

  #failAll(reason: string): void {
    for (const [own, answer] of this.#waiting) answer(error(own, JSONRPC_SERVER_ERROR, reason));
    this.#waiting.clear();
  }
}

/** Whether a parsed body is a 2026-07-28 message: its `_meta` names a revision of that era. */
export function isStatelessMessage(body: unknown): boolean {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  const meta = (body as { params?: { _meta?: Record<string, unknown> } }).params?._meta;
  const claimed = meta?.["io.modelcontextprotocol/protocolVersion"];
  return typeof claimed === "string" && claimed >= FIRST_MODERN_VERSION;
}

/** Results of these methods may be cached by 2026-07-28 clients (SEP-2549). */
const CACHEABLE = new Set([
  "tools/list",
  "prompts/list",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "server/discover",
]);

/**
 * A session-era result in the shape 2026-07-28 clients require: `resultType` (SEP-2322: the
 * child's answers are always complete), and for cacheable results `ttlMs` and `cacheScope`,
 * with the spec's defaults (no caching, private to the caller).
 */
function modernResult(method: string, result: Record<string, unknown>): Record<string, unknown> {
  const modern: Record<string, unknown> = { resultType: "complete", ...result };
  if (CACHEABLE.has(method)) {
    modern.ttlMs ??= 0;
    modern.cacheScope ??= "private";
  }
  return modern;
}

function discoverResult(init: InitializeResult): Record<string, unknown> {
  return {
    supportedVersions: [FIRST_MODERN_VERSION],
    capabilities: init.capabilities ?? {},
    ...(init.instructions !== undefined && { instructions: init.instructions }),
    ...(init.serverInfo && { _meta: { "io.modelcontextprotocol/serverInfo": init.serverInfo } }),
  };
}

function error(id: string | number | null, code: number, message: string): JSONRPCMessage {
  return { jsonrpc: "2.0", id, error: { code, message } } as JSONRPCMessage;
}

/** Writes the head, after the forward request's hooks have seen it. */
function respond(request: ForwardRequest, status: number, headers: Record<string, string>): void {
  request.onResponse?.(status, headers);
  request.res.writeHead(status, headers);
}

function reply(request: ForwardRequest, status: number, message: JSONRPCMessage): void {
  const body = JSON.stringify(message);
  respond(request, status, { "content-type": "application/json" });
  request.res.end(body);
}

/** Answers with an event stream; returns the function that sends one message on it. */
function openStream(request: ForwardRequest): Answer {
  const { res } = request;
  respond(request, 200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  return (message) => writeEvent(res, message);
}

function writeEvent(res: ServerResponse, message: JSONRPCMessage): void {
  if (!res.writableEnded) res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}
