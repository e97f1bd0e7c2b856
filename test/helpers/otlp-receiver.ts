/**
 * An OTLP/HTTP traces receiver for tests, as Jaeger or the OpenTelemetry Collector would run
 * it: POST /v1/traces in protobuf (the default encoding) or JSON. The protobuf side is a small
 * wire-format reader for the fields the tests look at (opentelemetry/proto trace/v1).
 */
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { vi } from "vitest";

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, AttributeValue>;
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** Nanoseconds since the epoch. */
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  resource: Record<string, AttributeValue>;
}

export interface OtlpReceiver {
  /** Base URL, for `telemetry.otlp_endpoint`. */
  url: string;
  spans: ReceivedSpan[];
  contentTypes: string[];
  /** The headers of every export request, in order. */
  requestHeaders: IncomingHttpHeaders[];
  waitForSpans(predicate: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const requestHeaders: IncomingHttpHeaders[] = [];
  const server = createServer(async (req, res) => {
    requestHeaders.push(req.headers);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const type = req.headers["content-type"] ?? "";
    contentTypes.push(type);
    if (req.url !== "/v1/traces") {
      res.writeHead(404).end();
      return;
    }
    spans.push(
      ...(type.includes("json") ? fromJson(JSON.parse(body.toString("utf8"))) : fromProtobuf(body)),
    );
    res.writeHead(200, {
      "content-type": type.includes("json") ? "application/json" : "application/x-protobuf",
    });
    res.end(type.includes("json") ? "{}" : undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    requestHeaders,
    waitForSpans: (predicate) =>
      vi.waitFor(
        () => {
          if (!predicate(spans)) throw new Error(`${spans.length} spans so far`);
          return spans;
        },
        { timeout: 10_000, interval: 20 },
      ),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// --- OTLP JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) ---

interface JsonKeyValue {
  key: string;
  value: {
    stringValue?: string;
    intValue?: string | number;
    boolValue?: boolean;
    doubleValue?: number;
  };
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const attributes: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? []) {
    attributes[key] =
      value.stringValue ??
      (value.intValue !== undefined
        ? Number(value.intValue)
        : (value.boolValue ?? value.doubleValue ?? ""));
  }
  return attributes;
}

function fromJson(request: {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes?: JsonKeyValue[];
        status?: { code?: number };
        startTimeUnixNano: string;
        endTimeUnixNano: string;
      }[];
    }[];
  }[];
}): ReceivedSpan[] {
  return (request.resourceSpans ?? []).flatMap((resourceSpans) => {
    const resource = jsonAttributes(resourceSpans.resource?.attributes);
    return (resourceSpans.scopeSpans ?? []).flatMap((scopeSpans) =>
      (scopeSpans.spans ?? []).map((span) => ({
        traceId: span.traceId,
        spanId: span.spanId,
        parentSpanId: span.parentSpanId ?? "",
        name: span.name,
        kind: span.kind,
        attributes: jsonAttributes(span.attributes),
        statusCode: span.status?.code ?? 0,
        startTimeUnixNano: BigInt(span.startTimeUnixNano),
        endTimeUnixNano: BigInt(span.endTimeUnixNano),
        resource,
      })),
    );
  });
}

// --- OTLP protobuf: just enough of the wire format ---

type Field = { number: number; varint?: bigint; bytes?: Buffer; fixed64?: Buffer };

function readFields(buffer: Buffer): Field[] {
  const fields: Field[] = [];
  let offset = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[offset++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const tag = Number(varint());
    const number = tag >>> 3;
    switch (tag & 7) {
      case 0:
        fields.push({ number, varint: varint() });
        break;
      case 1:
        fields.push({ number, fixed64: buffer.subarray(offset, offset + 8) });
        offset += 8;
        break;
      case 2: {
        const length = Number(varint());
        fields.push({ number, bytes: buffer.subarray(offset, offset + length) });
        offset += length;
        break;
      }
      case 5:
        offset += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${tag & 7}`);
    }
  }
  return fields;
}

const all = (fields: Field[], number: number) => fields.filter((field) => field.number === number);
const first = (fields: Field[], number: number) => fields.find((field) => field.number === number);

function protobufValue(buffer: Buffer): AttributeValue {
  const fields = readFields(buffer);
  const text = first(fields, 1)?.bytes;
  if (text) return text.toString("utf8");
  const bool = first(fields, 2)?.varint;
  if (bool !== undefined) return bool === 1n;
  const int = first(fields, 3)?.varint;
  if (int !== undefined) return Number(BigInt.asIntN(64, int));
  const double = first(fields, 4)?.fixed64;
  return double ? double.readDoubleLE(0) : "";
}

function protobufAttributes(fields: Field[], number: number): Record<string, AttributeValue> {
  const attributes: Record<string, AttributeValue> = {};
  for (const field of all(fields, number)) {
    const keyValue = readFields(field.bytes as Buffer);
    const key = first(keyValue, 1)?.bytes?.toString("utf8") ?? "";
    const value = first(keyValue, 2)?.bytes;
    attributes[key] = value ? protobufValue(value) : "";
  }
  return attributes;
}

function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpansField of all(readFields(body), 1)) {
    const resourceSpans = readFields(resourceSpansField.bytes as Buffer);
    const resourceField = first(resourceSpans, 1)?.bytes;
    const resource = resourceField ? protobufAttributes(readFields(resourceField), 1) : {};
    for (const scopeSpansField of all(resourceSpans, 2)) {
      for (const spanField of all(readFields(scopeSpansField.bytes as Buffer), 2)) {
        const span = readFields(spanField.bytes as Buffer);
        const status = first(span, 15)?.bytes;
        spans.push({
          traceId: first(span, 1)?.bytes?.toString("hex") ?? "",
          spanId: first(span, 2)?.bytes?.toString("hex") ?? "",
          parentSpanId: first(span, 4)?.bytes?.toString("hex") ?? "",
          name: first(span, 5)?.bytes?.toString("utf8") ?? "",
          kind: Number(first(span, 6)?.varint ?? 0n),
          attributes: protobufAttributes(span, 9),
          statusCode: status ? Number(first(readFields(status), 3)?.varint ?? 0n) : 0,
          startTimeUnixNano: first(span, 7)?.fixed64?.readBigUInt64LE(0) ?? 0n,
          endTimeUnixNano: first(span, 8)?.fixed64?.readBigUInt64LE(0) ?? 0n,
          resource,
        });
      }
    }
  }
  return spans;
}
