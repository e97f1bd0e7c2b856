/**
 * Pipeline steps for the request body: a POST body is received whole (bounded by
 * `limits.max_body_bytes`) and peeked at for the JSON-RPC method, id and tool before anything
 * is forwarded; a body that is not JSON is refused, but only after authentication, so that
 * only an authenticated client learns about it.
 */
import { GatewayError } from "../errors.js";
import { readBody } from "../http/body.js";
import type { Exchange, Step } from "../pipeline/exchange.js";
import { type JsonRpcParseError, peekJsonRpc } from "./jsonrpc.js";

export const receiveMessage: Step = (exchange) => {
  if (exchange.req.method !== "POST") return;
  exchange.record.method = null;
  return readBody(exchange.req, exchange.generation.config.limits.max_body_bytes).then((body) =>
    peekAt(exchange, body),
  );
};

function peekAt(exchange: Exchange, body: Buffer): void {
  exchange.body = body;
  const { record } = exchange;
  try {
    const peek = peekJsonRpc(body);
    exchange.peek = peek;
    record.method = peek.method;
    record.request_id = peek.id;
    if (peek.tool !== undefined) record.tool = peek.tool;
    else if (peek.name !== undefined) {
      // What a 2026-07-28 request names in Mcp-Name, which validateEra holds to the body.
      if (peek.method === "prompts/get") record.prompt = peek.name;
      else if (peek.method === "resources/read") record.resource = peek.name;
    }
  } catch (error) {
    exchange.parseError = error as JsonRpcParseError;
  }
}

export const refuseUnparsedBody: Step = ({ parseError }) => {
  if (parseError) {
    throw new GatewayError("parse_error", `request body is not valid JSON: ${parseError.message}`);
  }
};
