/**
 * A round-robin HTTP load balancer for replica tests: request n goes to replica n mod the
 * number of replicas, its Host kept, so that every step of a flow lands on another process.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Balancer {
  origin: string;
  /** Requests sent to each replica, by its index. */
  served: number[];
  close(): Promise<void>;
}

export async function startBalancer(port: number, replicas: () => string[]): Promise<Balancer> {
  const served: number[] = [];
  let next = 0;
  const server: Server = createServer((req, res) => {
    const targets = replicas();
    const index = next++ % targets.length;
    served[index] = (served[index] ?? 0) + 1;
    const target = new URL(targets[index] as string);
    const upstream = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
