/** Misbehaving upstreams, for the failures a real MCP server only shows now and then. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RunningServer {
  url: string;
  server: Server;
  requests: IncomingMessage[];
  close(): Promise<void>;
}

export async function startHttpServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<RunningServer> {
  const requests: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    server,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on: bind one, then close it. */
/** A loopback port nothing listens on now (for a server that must be told its port first). */
export async function freePort(): Promise<number> {
  return Number(new URL(await unusedPortUrl()).port);
}

export async function unusedPortUrl(): Promise<string> {
  const running = await startHttpServer(() => {});
  await running.close();
  return running.url;
}

/** An upstream that reads each request whole and answers an empty JSON-RPC result. */
export function startEmptyResultUpstream(): Promise<RunningServer> {
  return startHttpServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"jsonrpc":"2.0","id":1,"result":{}}');
    });
  });
}
