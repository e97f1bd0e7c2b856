import { describe, expect, it } from "vitest";
import { bodyRewriter, type MessageTransform } from "../../../src/mcp/rewrite.js";

/** Marks every message it sees, so a test can tell rewritten from passed-through. */
const mark: MessageTransform = (message) => ({ ...(message as object), seen: true });

function rewriteAll(type: string, chunks: string[]): string {
  const rewriter = bodyRewriter(type, mark);
  if (!rewriter) throw new Error(`no rewriter for ${type}`);
  return chunks.map((chunk) => rewriter.write(Buffer.from(chunk))).join("") + rewriter.end();
}

describe("bodyRewriter", () => {
  it("rewrites a JSON body, and each message of a batch", () => {
    expect(rewriteAll("application/json; charset=utf-8", ['{"id":1', ',"result":{}}'])).toBe(
      '{"id":1,"result":{},"seen":true}',
    );
    expect(rewriteAll("application/json", ['[{"id":1},{"id":2}]'])).toBe(
      '[{"id":1,"seen":true},{"id":2,"seen":true}]',
    );
    expect(rewriteAll("application/json", ["not json"])).toBe("not json");
  });

  it("passes on unparsed what the transform says it leaves as it is", () => {
    const parsed: unknown[] = [];
    const transform: MessageTransform = Object.assign(
      (message: unknown) => {
        parsed.push(message);
        return { ...(message as object), seen: true };
      },
      { leaves: (text: string) => !text.includes("delete_") },
    );
    const run = (type: string, body: string) => {
      const rewriter = bodyRewriter(type, transform);
      if (!rewriter) throw new Error(`no rewriter for ${type}`);
      return rewriter.write(Buffer.from(body)) + rewriter.end();
    };
    // Spacing kept: proof that it was not parsed and written again.
    expect(run("application/json", '{ "id": 1, "result": {"tools": [{"name": "read"}]} }')).toBe(
      '{ "id": 1, "result": {"tools": [{"name": "read"}]} }',
    );
    expect(run("application/json", '{"id":2,"result":{"tools":[{"name":"delete_x"}]}}')).toBe(
      '{"id":2,"result":{"tools":[{"name":"delete_x"}]},"seen":true}',
    );
    expect(
      run("text/event-stream", 'id: 1\ndata: { "id": 3 }\n\ndata: {"id":4,"x":"delete_"}\n\n'),
    ).toBe('id: 1\ndata: { "id": 3 }\n\ndata: {"id":4,"x":"delete_","seen":true}\n\n');
    expect(parsed).toHaveLength(2);
  });

  it("rewrites each event of a stream when it is complete, keeping its other fields", () => {
    const rewriter = bodyRewriter("text/event-stream", mark);
    if (!rewriter) throw new Error("no rewriter");
    expect(rewriter.write(Buffer.from('event: message\nid: 7\ndata: {"id":'))).toBe("");
    expect(rewriter.write(Buffer.from('1}\n\n: keep-alive\n\ndata: {"id":2}\n'))).toBe(
      'event: message\nid: 7\ndata: {"id":1,"seen":true}\n\n: keep-alive\n\n',
    );
    expect(rewriter.write(Buffer.from("\n"))).toBe('data: {"id":2,"seen":true}\n\n');
    expect(rewriter.end()).toBe("");
  });

  it("joins multi-line data, keeps CRLF, passes data that is not JSON, and a multi-byte split", () => {
    expect(rewriteAll("text/event-stream", ['data: {"id":\r\ndata: 3}\r\n\r\n'])).toBe(
      'data: {"id":3,"seen":true}\r\n\r\n',
    );
    expect(rewriteAll("text/event-stream", ["data: hello\n\n"])).toBe("data: hello\n\n");
    const euro = Buffer.from('data: {"name":"€"}\n\n');
    const rewriter = bodyRewriter("text/event-stream", mark);
    const split = euro.indexOf(0xe2) + 1;
    const out =
      (rewriter?.write(euro.subarray(0, split)) ?? "") +
      (rewriter?.write(euro.subarray(split)) ?? "");
    expect(out).toBe('data: {"name":"€","seen":true}\n\n');
  });

  it("leaves bodies that carry no JSON-RPC alone", () => {
    expect(bodyRewriter("text/plain", mark)).toBeUndefined();
    expect(bodyRewriter(undefined, mark)).toBeUndefined();
  });
});
