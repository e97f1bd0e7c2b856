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
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxBytes) {
        cleanup();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received));
    };
    const onAborted = () => {
      cleanup();
      reject(new ClientAbortedError("client closed the connection while sending the body"));
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAborted);
      req.off("close", onClose);
    };
    const onClose = () => {
      if (!req.complete) onAborted();
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAborted);
    req.on("close", onClose);
  });
}

function tooLarge(maxBytes: number): GatewayError {
  return new GatewayError(
    "body_too_large",
    `request body exceeds limits.max_body_bytes (${maxBytes} bytes)`,
  );
}
