import { EXIT } from "../errors.js";

/** Where `mcpgw health` asks when no --url is given: the default listen address. */
export const DEFAULT_HEALTH_URL = "http://127.0.0.1:8080/readyz";

/**
 * `mcpgw health [--url URL]`: asks a running gateway's /readyz, for container health checks
 * in images without curl. Exit 0 when it answers 200, 1 otherwise (not ready, unreachable,
 * or no answer within 3 s), with the answer on stdout or the reason on stderr.
 */
export async function health(
  url: string,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    const body = (await response.text()).trim();
    if (response.status === 200) {
      out.write(`${url}: ${response.status} ${body}\n`);
      return EXIT.ok;
    }
    err.write(`${url}: ${response.status} ${body}\n`);
    return EXIT.fatal;
  } catch (error) {
    const cause = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
    err.write(`${url}: ${cause}\n`);
    return EXIT.fatal;
  }
}
