/**
 * `npm run bench:instructions`: user-space instructions per request, counted by valgrind's
 * callgrind. Unlike CPU time on a shared virtual machine, the count repeats run to run (within
 * about 0.5% here), so two builds, or the gateway and the bare pass-through, can be compared
 * exactly. It leaves out the kernel's share (socket and file syscalls), which is about the same
 * for every target, so its ratios come out above the CPU-time ratios of `npm run bench`.
 *
 * Each target runs under callgrind; after a warm-up the counters are zeroed, a fixed number of
 * requests is sent, and the counters are dumped (callgrind_control). Needs valgrind
 * (`apt-get install valgrind`); takes a few minutes. `BENCH_TARGETS=passthrough,mcpgw` runs a subset;
 * `BENCH_NODE=/path/to/node` runs the measured processes on another Node.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import autocannon from "autocannon";
import { stringify } from "yaml";
import { startTokenIssuer, type TokenIssuer } from "./jwt.js";
import { BENCH_NODE, benchNodeVersion } from "./node.js";
import { type OtlpSink, startOtlpSink } from "./otlp-sink.js";
import {
  MCP_CLIENT_HEADERS,
  MCP_PATH,
  parsePortAnnouncement,
  TOOLS_CALL_2026_HEADERS,
  TOOLS_CALL_2026_REQUEST,
  TOOLS_CALL_HEADERS,
  TOOLS_CALL_REQUEST,
  TOOLS_LIST_REQUEST,
} from "./protocol.js";
import { FIFTY_RULE_POLICY } from "./targets.js";

const execFileAsync = promisify(execFile);
const WARMUP_REQUESTS = 1_500;
const MEASURED_REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3_000);
const API_KEY = "bench-instructions-key-0123456789";
const script = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const MCPGW_MAIN = fileURLToPath(new URL("../src/main.js", import.meta.url));

interface Running {
  child: ChildProcess;
  lines: string[];
  waitFor<T>(parse: (line: string) => T | undefined): Promise<T>;
}

function run(command: string, args: string[]): Running {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    lines.push(line);
    for (const waiter of waiters.splice(0)) waiter();
  });
  return {
    child,
    lines,
    waitFor: async (parse) => {
      for (;;) {
        for (const line of lines) {
          const parsed = parse(line);
          if (parsed !== undefined) return parsed;
        }
        if (child.exitCode !== null) throw new Error(`${command} exited before it was ready`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

function underCallgrind(outDir: string, args: string[]): Running {
  return run("valgrind", [
    "--tool=callgrind",
    // V8 writes machine code at run time; callgrind must notice it.
    "--smc-check=all-non-file",
    `--callgrind-out-file=${join(outDir, "callgrind.out.%p")}`,
    BENCH_NODE,
    ...args,
  ]);
}

/** What the load generator sends: tools/list unless a target says otherwise. */
interface Request {
  body: string;
  headers?: Readonly<Record<string, string>>;
}

function load(
  url: string,
  amount: number,
  authorization: string,
  request: Request = { body: TOOLS_LIST_REQUEST },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const options: autocannon.Options = {
      url,
      method: "POST",
      connections: 4,
      amount,
      headers: { ...MCP_CLIENT_HEADERS, ...request.headers, authorization },
      body: request.body,
    };
    autocannon(options, (error, result) => {
      if (error) reject(error);
      else if (result.non2xx > 0 || result.errors > 0) {
        reject(new Error(`${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors`));
      } else resolve();
    });
  });
}

interface Target {
  name: string;
  /** The request sent; default tools/list. */
  request?: Request;
  /** Starts the measured process under callgrind; resolves with its URL and authorization. */
  start(
    outDir: string,
    upstreamUrl: string,
  ): Promise<{ server: Running; url: string; authorization: string }>;
}

const gatewayUrl = (line: string) => {
  try {
    const entry = JSON.parse(line) as { msg?: string; url?: string };
    return entry.msg === "listening" ? entry.url : undefined;
  } catch {
    return undefined;
  }
};

async function gateway(outDir: string, config: Record<string, unknown>) {
  const file = join(outDir, "mcpgw.yaml");
  await writeFile(
    file,
    stringify({
      listen: "127.0.0.1:0",
      audit: { path: join(outDir, "audit.jsonl") },
      // The bench's token issuer serves its JWKS on loopback.
      outbound: { allowed_networks: ["127.0.0.1"] },
      ...config,
    }),
  );
  const server = underCallgrind(outDir, [MCPGW_MAIN, "run", "--config", file]);
  return { server, url: await server.waitFor(gatewayUrl) };
}

async function hashKey(key: string): Promise<string> {
  const pending = execFileAsync(BENCH_NODE, [MCPGW_MAIN, "hash-key"]);
  pending.child.stdin?.end(key);
  return (await pending).stdout.trim();
}

let issuer: TokenIssuer | undefined;
let sink: OtlpSink | undefined;

/** mcpgw with one API key and tracing on, exporting to an OTLP sink in the harness. */
function tracing(name: string, sampleRatio: number): Target {
  return {
    name,
    async start(outDir, upstreamUrl) {
      const hash = await hashKey(API_KEY);
      sink ??= await startOtlpSink();
      const started = await gateway(outDir, {
        upstream: { url: upstreamUrl },
        auth: { keys: [{ id: "bench", hash }] },
        telemetry: {
          enabled: true,
          otlp_endpoint: sink.url,
          ...(sampleRatio === 1
            ? { sampler: "always_on" }
            : { sampler: "parentbased_traceidratio", sampler_ratio: sampleRatio }),
        },
      });
      return { ...started, authorization: `Bearer ${API_KEY}` };
    },
  };
}

/** mcpgw with one API key, sending a tools/call of one protocol era. */
function apiKeyCall(name: string, request: Request): Target {
  return {
    name,
    request,
    async start(outDir, upstreamUrl) {
      const hash = await hashKey(API_KEY);
      const started = await gateway(outDir, {
        upstream: { url: upstreamUrl },
        auth: { keys: [{ id: "bench", hash }] },
      });
      return { ...started, authorization: `Bearer ${API_KEY}` };
    },
  };
}

const TARGETS: Target[] = [
  {
    name: "passthrough",
    async start(outDir, upstreamUrl) {
      const server = underCallgrind(outDir, [script("./passthrough.js"), upstreamUrl]);
      const port = await server.waitFor(parsePortAnnouncement);
      return {
        server,
        url: `http://127.0.0.1:${port}${MCP_PATH}`,
        authorization: `Bearer ${API_KEY}`,
      };
    },
  },
  {
    name: "mcpgw",
    async start(outDir, upstreamUrl) {
      const hash = await hashKey(API_KEY);
      const started = await gateway(outDir, {
        upstream: { url: upstreamUrl },
        auth: { keys: [{ id: "bench", hash }] },
      });
      return { ...started, authorization: `Bearer ${API_KEY}` };
    },
  },
  {
    name: "mcpgw-jwt-warm",
    async start(outDir, upstreamUrl) {
      issuer ??= await startTokenIssuer();
      const started = await gateway(outDir, {
        upstream: { url: upstreamUrl },
        auth: {
          oauth: issuer.oauthConfig(),
        },
      });
      return { ...started, authorization: `Bearer ${issuer.mint()}` };
    },
  },
  {
    // The "mcpgw" target with a 50-rule policy and one rate limit (bench/targets.ts).
    name: "mcpgw-policy-50",
    async start(outDir, upstreamUrl) {
      const hash = await hashKey(API_KEY);
      const started = await gateway(outDir, {
        upstream: { url: upstreamUrl },
        auth: { keys: [{ id: "bench", hash }] },
        ...FIFTY_RULE_POLICY,
      });
      return { ...started, authorization: `Bearer ${API_KEY}` };
    },
  },
  {
    // The same policy on a tools/call: the decision alone, without a list to rewrite.
    name: "mcpgw-policy-50-call",
    request: { body: TOOLS_CALL_REQUEST, headers: TOOLS_CALL_HEADERS },
    async start(outDir, upstreamUrl) {
      const hash = await hashKey(API_KEY);
      const started = await gateway(outDir, {
        upstream: { url: upstreamUrl },
        auth: { keys: [{ id: "bench", hash }] },
        ...FIFTY_RULE_POLICY,
      });
      return { ...started, authorization: `Bearer ${API_KEY}` };
    },
  },
  apiKeyCall("mcpgw-call-2025", { body: TOOLS_CALL_REQUEST, headers: TOOLS_CALL_HEADERS }),
  apiKeyCall("mcpgw-call-2026", {
    body: TOOLS_CALL_2026_REQUEST,
    headers: TOOLS_CALL_2026_HEADERS,
  }),
  {
    // The "mcpgw" target behind a table of 20 routes, requests to the last one (at the same
    // path, /mcp): a route is an exact-path map lookup, so the cost must not grow with the table.
    name: "mcpgw-20-routes",
    async start(outDir, upstreamUrl) {
      const hash = await hashKey(API_KEY);
      const routes = Array.from({ length: 20 }, (_, index) => ({
        path: index === 19 ? MCP_PATH : `/agents/${index + 1}/mcp`,
        upstream: { url: upstreamUrl },
      }));
      const started = await gateway(outDir, {
        routes,
        auth: { keys: [{ id: "bench", hash }] },
      });
      // The listening line names the first route.
      const url = new URL(MCP_PATH, started.url).href;
      return { ...started, url, authorization: `Bearer ${API_KEY}` };
    },
  },
  tracing("mcpgw-tracing", 1),
  tracing("mcpgw-tracing-10pct", 0.1),
];

async function measure(target: Target, upstreamUrl: string): Promise<number> {
  const outDir = await mkdtemp(join(tmpdir(), `mcpgw-ir-${target.name}-`));
  const { server, url, authorization } = await target.start(outDir, upstreamUrl);
  try {
    await load(url, WARMUP_REQUESTS, authorization, target.request);
    const pid = String(server.child.pid);
    await execFileAsync("callgrind_control", ["--zero", pid]);
    await load(url, MEASURED_REQUESTS, authorization, target.request);
    await execFileAsync("callgrind_control", ["--dump", pid]);
    // --dump writes callgrind.out.<pid>.<part>; the only part holds the measured requests.
    const [part] = (await readdir(outDir)).filter((name) =>
      /^callgrind\.out\.\d+\.\d+$/.test(name),
    );
    if (part === undefined) throw new Error(`${target.name}: callgrind wrote no dump`);
    const totals = /^(?:summary|totals): (\d+)/m.exec(await readFile(join(outDir, part), "utf8"));
    const instructions = Number(totals?.[1] ?? Number.NaN);
    return instructions / MEASURED_REQUESTS;
  } finally {
    server.child.kill("SIGKILL");
    await once(server.child, "exit").catch(() => {});
    await rm(outDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const upstream = run(BENCH_NODE, [script("./upstream.js")]);
  const upstreamUrl = `http://127.0.0.1:${await upstream.waitFor(parsePortAnnouncement)}${MCP_PATH}`;
  const results: [string, number][] = [];
  try {
    const only = process.env.BENCH_TARGETS?.split(",");
    for (const target of TARGETS.filter(({ name }) => !only || only.includes(name))) {
      process.stderr.write(`bench:instructions: ${target.name}\n`);
      results.push([target.name, await measure(target, upstreamUrl)]);
    }
  } finally {
    upstream.child.kill();
    await issuer?.close();
    const spans = await sink?.close();
    if (spans !== undefined) process.stderr.write(`bench:instructions: ${spans} spans exported\n`);
  }
  const baseline = results[0]?.[1] ?? Number.NaN;
  process.stdout.write(
    `${MEASURED_REQUESTS} requests per target, user-space instructions (callgrind), Node ${benchNodeVersion}\n\n`,
  );
  process.stdout.write("| target | instructions per request | ÷ passthrough |\n|---|--:|--:|\n");
  for (const [name, perRequest] of results) {
    process.stdout.write(
      `| ${name} | ${Math.round(perRequest).toLocaleString("en")} | ${(perRequest / baseline).toFixed(3)} |\n`,
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:instructions: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
