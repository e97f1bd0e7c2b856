import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { GatewayError } from "../errors.js";

/**
 * After refusing a body as too large, how long and how much more of it the gateway reads (and
 * discards) before it closes the connection: enough for a client still sending to finish and
 * read the 413, bounded so that a refusal is not a way to keep the gateway reading.
 */
export const LINGER_MS = 5_000;
export const LINGER_MAX_BYTES = 64 * 1024 * 1024;

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
    return Promise.reject(tooLarge(req, maxBytes));
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
      if (received > maxBytes) fail(tooLarge(req, maxBytes));
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

function tooLarge(req: IncomingMessage, maxBytes: number): GatewayError {
  lingerOnClose(req);
  return new GatewayError(
    "body_too_large",
    `request body exceeds limits.max_body_bytes (${maxBytes} bytes)`,
  );
}

/**
 * Lingering close (nginx's `lingering_close`): the 413 goes out with `Connection: close`, and
 * Node would then close the socket at once while the client is still sending. The bytes it
 * sends after that make the kernel answer with a reset, which discards the 413 before the
 * client reads it (`write EPIPE`, `ECONNRESET`). So the gateway half-closes instead (FIN after
 * the answer), goes on reading and discarding what still comes, and closes when the client
 * has closed its side, when the declared body (at most LINGER_MAX_BYTES) has been read, or after
 * LINGER_MS, whichever comes first.
 */
function lingerOnClose(req: IncomingMessage): void {
  const socket = req.socket as Socket & { destroySoon?: () => void };
  const declared = Number(req.headers["content-length"]);
  const budget = Math.min(
    Number.isFinite(declared) && declared > 0 ? declared : LINGER_MAX_BYTES,
    LINGER_MAX_BYTES,
  );
  let discarded = 0;
  let close: (() => void) | undefined;
  // The body goes on being parsed and dropped: the parser reads the socket only while the
  // request is consumed.
  req.on("data", (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded >= budget) close?.();
  });
  req.resume();
  socket.destroySoon = () => {
    const timer = setTimeout(() => close?.(), LINGER_MS);
    timer.unref();
    close = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    if (req.complete || discarded >= budget) {
      close();
      return;
    }
    // FIN after the answer; the client's side closes when it has read it.
    socket.end();
    socket.once("end", close);
    req.once("end", close);
  };
}
