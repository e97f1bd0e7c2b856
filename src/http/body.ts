import type { IncomingMessage } from "node:http";
import { GatewayError } from "../errors.js";

/** Thrown when the client goes away before its body arrived; nothing is left to answer. */
export class ClientAbortedError extends Error {
  override readonly name = "ClientAbortedError";
}

/**
 * Receives a request body of at most `maxBytes`. Bodies are received whole before anything is
 * forwarded: an oversized or invalid body must be refused with nothing sent upstream.
 * Slow senders are cut off by the server's `request_timeout`.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) {
    return Promise.reject(tooLarge(maxBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    // Listeners stay attached once settled (the request is done with either way); the flag
    // keeps a late event from settling twice and spares four removals on every request.
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      reject(error);
    };
    req.on("data", (chunk: Buffer) => {
      if (settled) return;
      received += chunk.length;
      if (received > maxBytes) fail(tooLarge(maxBytes));
      else chunks.push(chunk);
    });
    req.on("end", () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received));
    });
    const aborted = () =>
      fail(new ClientAbortedError("client closed the connection while sending the body"));
    req.on("error", aborted);
    req.on("close", () => {
      if (!req.complete) aborted();
    });
  });
}

function tooLarge(maxBytes: number): GatewayError {
  return new GatewayError(
    "body_too_large",
    `request body exceeds limits.max_body_bytes (${maxBytes} bytes)`,
  );
}
