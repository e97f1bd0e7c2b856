/**
 * A collector stand-in for the tracing scenario: accepts OTLP/HTTP exports and counts the
 * spans, without decoding more than it must. It runs in the harness, not in the measured
 * process, as a real collector would run elsewhere.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface OtlpSink {
  url: string;
  /** Stops the sink; resolves with the number of spans received. */
  close(): Promise<number>;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  let spans = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      spans += countSpans(Buffer.concat(chunks));
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve(spans));
      }),
  };
}

/**
 * Spans in an ExportTraceServiceRequest: field 1 (ResourceSpans) > field 2 (ScopeSpans) >
 * field 2 (Span), each length-delimited.
 */
function countSpans(message: Buffer): number {
  let total = 0;
  for (const resourceSpans of lengthDelimited(message, 1)) {
    for (const scopeSpans of lengthDelimited(resourceSpans, 2))
      total += lengthDelimited(scopeSpans, 2).length;
  }
  return total;
}

function lengthDelimited(buffer: Buffer, wanted: number): Buffer[] {
  const found: Buffer[] = [];
  let offset = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = buffer[offset++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (offset < buffer.length) {
    const tag = varint();
    const wireType = tag & 7;
    if (wireType === 0) varint();
    else if (wireType === 1) offset += 8;
    else if (wireType === 5) offset += 4;
    else {
      const length = varint();
      if (tag >>> 3 === wanted) found.push(buffer.subarray(offset, offset + length));
      offset += length;
    }
  }
  return found;
}
