/**
 * Rewrites the JSON-RPC messages of an upstream's response as it passes through: the hook a
 * step sets (`Exchange.transformResponse`) for what needs to change an answer, such as a
 * tools/list filtered per caller. A JSON body is rewritten whole; an event stream event by
 * event, each as soon as it is complete, so a stream stays a stream. A route without a
 * transform never gets here: its bytes are relayed untouched.
 */
import { StringDecoder } from "node:string_decoder";

/**
 * Returns the message to send instead (or the same one). Never throws for a message it skips.
 * `leaves`, when present, says from a message's JSON text alone that the transform would leave
 * it as it is: such a message is passed on without being parsed.
 */
export type MessageTransform = ((message: unknown) => unknown) & {
  readonly leaves?: ((text: string) => boolean) | undefined;
};

export interface BodyRewriter {
  /** True when the body is rewritten whole at its end (JSON): its length is known then. */
  readonly whole: boolean;
  /** The rewritten text of what is complete so far, or "" while it waits for more. */
  write(chunk: Buffer): string;
  /** What is left, rewritten where it can be (the bytes as they came, when left as they are). */
  end(): string | Buffer;
}

/** A rewriter for a response of `contentType`, or undefined when its body carries no JSON-RPC. */
export function bodyRewriter(
  contentType: string | undefined,
  transform: MessageTransform,
): BodyRewriter | undefined {
  const type = (contentType ?? "").split(";", 1)[0]?.trim().toLowerCase();
  if (type === "text/event-stream") return new EventStreamRewriter(transform);
  if (type === "application/json") return new JsonBodyRewriter(transform);
  return undefined;
}

/** `transform` over one message, or each message of a batch. */
function applyTo(value: unknown, transform: MessageTransform): unknown {
  return Array.isArray(value) ? value.map((message) => transform(message)) : transform(value);
}

/** A JSON body: buffered to its end, parsed once, rewritten, sent whole. */
class JsonBodyRewriter implements BodyRewriter {
  readonly whole = true;
  readonly #transform: MessageTransform;
  readonly #chunks: Buffer[] = [];

  constructor(transform: MessageTransform) {
    this.#transform = transform;
  }

  write(chunk: Buffer): string {
    this.#chunks.push(chunk);
    return "";
  }

  end(): string | Buffer {
    const body =
      this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    const text = body.toString("utf8");
    if (this.#transform.leaves?.(text)) return body;
    try {
      return JSON.stringify(applyTo(JSON.parse(text), this.#transform));
    } catch {
      // Not JSON after all: the client gets what the upstream sent.
      return text;
    }
  }
}

/** Matches the blank line that ends an event (WHATWG HTML §9.2.6: CRLF, LF or CR lines). */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/;

/**
 * An event stream: each complete event's `data` (one JSON-RPC message in MCP) is rewritten;
 * its other fields (`id`, `event`, `retry`, comments) are kept as they were.
 */
class EventStreamRewriter implements BodyRewriter {
  readonly whole = false;
  readonly #transform: MessageTransform;
  readonly #decoder = new StringDecoder("utf8");
  #pending = "";

  constructor(transform: MessageTransform) {
    this.#transform = transform;
  }

  write(chunk: Buffer): string {
    this.#pending += this.#decoder.write(chunk);
    let out = "";
    for (let match = EVENT_END.exec(this.#pending); match; match = EVENT_END.exec(this.#pending)) {
      const end = match.index + match[0].length;
      out += this.#rewrite(this.#pending.slice(0, match.index)) + match[0];
      this.#pending = this.#pending.slice(end);
    }
    return out;
  }

  end(): string {
    const rest = this.#pending + this.#decoder.end();
    this.#pending = "";
    return rest;
  }

  #rewrite(event: string): string {
    const lines = event.split(/\r\n|\n|\r/);
    const data = lines.filter((line) => line.startsWith("data:"));
    if (data.length === 0) return event;
    const text = data.map((line) => line.slice(line[5] === " " ? 6 : 5)).join("\n");
    if (this.#transform.leaves?.(text)) return event;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return event;
    }
    const rewritten = `data: ${JSON.stringify(applyTo(message, this.#transform))}`;
    const newline = event.includes("\r\n") ? "\r\n" : "\n";
    const first = lines.findIndex((line) => line.startsWith("data:"));
    return lines
      .flatMap((line, index) =>
        index === first ? [rewritten] : line.startsWith("data:") ? [] : [line],
      )
      .join(newline);
  }
}
