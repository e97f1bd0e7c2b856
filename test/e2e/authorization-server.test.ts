/**
 * The embedded authorization server through the built binary: its keys persist in state_dir
 * across a restart, and `mcpgw rotate-signing-key` makes it sign with a new key while the
 * tokens of the previous one stay valid.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, stat } from "node:fs/promises";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import { decodeProtectedHeader } from "jose";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { runBin, spawnBin } from "../helpers/bin.js";
import { killDaemons, startDaemon, track } from "../helpers/daemon.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { authorizationRequest, exchangeCode, registerPublicClient } from "../helpers/oauth-flow.js";

const PASSWORD = "rotate-suite-password";
const execFileAsync = promisify(execFile);
const REDIRECT = "http://127.0.0.1:53683/callback";

let upstream: ExampleServer;
let hash: string;

beforeAll(async () => {
  [upstream, hash] = await Promise.all([startExampleServer(), cheapHash(PASSWORD)]);
  return () => upstream.close();
});

afterEach(() => killDaemons());

/** Registers a client, logs alice in, and exchanges the code: an access token. */
async function accessToken(origin: string): Promise<string> {
  const clientId = await registerPublicClient(origin, "rotate", REDIRECT);
  const request = authorizationRequest({
    issuer: origin,
    clientId,
    redirectUri: REDIRECT,
    scope: "mcp",
    resource: `${origin}/mcp`,
  });
  const { redirect } = await logInAndConsent(new URL(request.url), REDIRECT, {
    username: "alice",
    password: PASSWORD,
  });
  const token = await exchangeCode(origin, {
    clientId,
    code: redirect.searchParams.get("code") as string,
    verifier: request.verifier,
    redirectUri: REDIRECT,
  });
  expect({ status: token.status, body: token.status === 200 ? "" : await token.text() }).toEqual({
    status: 200,
    body: "",
  });
  return ((await token.json()) as { access_token: string }).access_token;
}

async function status(origin: string, token: string): Promise<number> {
  const res = await fetch(`${origin}/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${token}` },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return res.status;
}

describe("mcpgw rotate-signing-key", () => {
  it("signs with a new key after a restart, and keeps the previous key's tokens valid", async () => {
    const port = new URL(await unusedPortUrl()).port;
    const origin = `http://127.0.0.1:${port}`;
    const daemon = await startDaemon(upstream.url, {
      listen: `127.0.0.1:${port}`,
      authorization_server: {
        enabled: true,
        issuer: origin,
        users: [{ username: "alice", password_hash: hash, scopes: [] }],
      },
    });
    const stateFile = path.join(daemon.dir, "mcpgw-state", "authorization-server.json");
    expect((await stat(stateFile)).mode & 0o777).toBe(0o600);
    const before = await accessToken(origin);
    const oldKid = decodeProtectedHeader(before).kid;
    expect(await status(origin, before)).toBe(200);

    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    const rotated = await runBin(["rotate-signing-key", "--config", daemon.file]);
    expect(rotated.code).toBe(0);
    const newKid = /new signing key (\S+)/.exec(rotated.stdout)?.[1];
    expect(newKid).toBeTruthy();
    expect(newKid).not.toBe(oldKid);
    expect(rotated.stdout).toContain(`kept for the tokens it signed: ${oldKid}`);

    const restarted = track(spawnBin(["run", "--config", daemon.file]));
    await restarted.waitForLog((line) => line.msg === "listening");
    // Signed before the rotation, verified after it: the previous key is still published.
    expect(await status(origin, before)).toBe(200);
    const after = await accessToken(origin);
    expect(decodeProtectedHeader(after).kid).toBe(newKid);
    expect(await status(origin, after)).toBe(200);
    const jwks = (await (await fetch(`${origin}/oauth/jwks`)).json()) as {
      keys: { kid: string }[];
    };
    expect(jwks.keys.map((key) => key.kid)).toEqual([newKid, oldKid]);
  });
});

describe("Client ID Metadata Documents", () => {
  /**
   * An HTTPS server on loopback, with a certificate of its own, serving one client's document at
   * /client.json; /redirect.json redirects there, /endless.json streams forever.
   */
  async function documentServer() {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-cimd-"));
    const key = path.join(dir, "key.pem");
    const cert = path.join(dir, "cert.pem");
    await execFileAsync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ]);
    let fetched = 0;
    const paths: string[] = [];
    const server = createHttpsServer(
      { key: await readFile(key), cert: await readFile(cert) },
      (req, res) => {
        fetched++;
        paths.push(req.url ?? "");
        if (req.url === "/redirect.json") {
          res.writeHead(302, { location: "/client.json" });
          res.end();
          return;
        }
        res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60" });
        if (req.url === "/endless.json") {
          res.write('{"client_name": "');
          const timer = setInterval(() => res.write("x".repeat(1024)), 1);
          res.on("close", () => clearInterval(timer));
          return;
        }
        res.end(JSON.stringify(document));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const clientId = `https://127.0.0.1:${(server.address() as AddressInfo).port}/client.json`;
    const document = {
      client_id: clientId,
      client_name: "CIMD Test Client",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
    return { clientId, cert, fetched: () => fetched, paths, close: () => server.close() };
  }

  async function gateway(allowPrivate: boolean, cert: string) {
    const port = new URL(await unusedPortUrl()).port;
    const origin = `http://127.0.0.1:${port}`;
    const daemon = await startDaemon(
      upstream.url,
      {
        listen: `127.0.0.1:${port}`,
        authorization_server: {
          enabled: true,
          issuer: origin,
          users: [{ username: "alice", password_hash: hash, scopes: [] }],
          client_id_metadata_documents: { allow_private_addresses: allowPrivate },
        },
      },
      { NODE_EXTRA_CA_CERTS: cert },
    );
    return { origin, daemon };
  }

  function authorizeUrl(origin: string, clientId: string, verifier: string): URL {
    const url = new URL(`${origin}/oauth/authorize`);
    url.search = new URLSearchParams({
      client_id: clientId,
      redirect_uri: REDIRECT,
      response_type: "code",
      state: "cimd",
      code_challenge: createHash("sha256").update(verifier).digest("base64url"),
      code_challenge_method: "S256",
    }).toString();
    return url;
  }

  it("takes an https client_id to its document, advertised in the metadata, and issues the client a token", async () => {
    const documents = await documentServer();
    try {
      const { origin, daemon } = await gateway(true, documents.cert);
      const metadata = (await (
        await fetch(`${origin}/.well-known/oauth-authorization-server`)
      ).json()) as Record<string, unknown>;
      expect(metadata.client_id_metadata_document_supported).toBe(true);
      const verifier = randomBytes(32).toString("base64url");
      const { redirect, pages } = await logInAndConsent(
        authorizeUrl(origin, documents.clientId, verifier),
        REDIRECT,
        { username: "alice", password: PASSWORD },
      );
      expect(pages).toEqual(["login", "consent"]);
      const token = await exchangeCode(origin, {
        clientId: documents.clientId,
        code: redirect.searchParams.get("code") as string,
        verifier,
        redirectUri: REDIRECT,
      });
      expect(token.status).toBe(200);
      const { access_token: accessToken } = (await token.json()) as { access_token: string };
      expect(await status(origin, accessToken)).toBe(200);
      await vi.waitFor(async () => {
        const lines = await daemon.auditLines();
        expect(lines.at(-1)).toMatchObject({ oauth_client_id: documents.clientId, sub: "alice" });
      });
      expect(documents.fetched()).toBeGreaterThan(0);
    } finally {
      documents.close();
    }
  });

  it("serves the official SDK client that names itself by its document instead of registering", async () => {
    const documents = await documentServer();
    try {
      const { origin, daemon } = await gateway(true, documents.cert);
      let code: string | undefined;
      let verifier = "";
      let saved: OAuthTokens | undefined;
      let info: { client_id: string } | undefined;
      const provider: OAuthClientProvider = {
        clientMetadataUrl: documents.clientId,
        redirectUrl: REDIRECT,
        clientMetadata: { redirect_uris: [REDIRECT], client_name: "CIMD Test Client" },
        clientInformation: () => info,
        saveClientInformation: (saved) => {
          info = saved;
        },
        tokens: () => saved,
        saveTokens: (tokens) => {
          saved = tokens;
        },
        saveCodeVerifier: (value) => {
          verifier = value;
        },
        codeVerifier: () => verifier,
        redirectToAuthorization: async (url) => {
          expect(url.searchParams.get("client_id")).toBe(documents.clientId);
          const { redirect } = await logInAndConsent(url, REDIRECT, {
            username: "alice",
            password: PASSWORD,
          });
          code = redirect.searchParams.get("code") ?? undefined;
        },
      };
      const endpoint = new URL(`${origin}/mcp`);
      await expect(
        new Client({ name: "cimd", version: "0" }).connect(
          new StreamableHTTPClientTransport(endpoint, { authProvider: provider }),
        ),
      ).rejects.toThrow(/Unauthorized/);
      const transport = new StreamableHTTPClientTransport(endpoint, { authProvider: provider });
      // Its client_id is its document's URL: nothing was registered.
      expect(info?.client_id).toBe(documents.clientId);
      await transport.finishAuth(code as string);
      const client = new Client({ name: "cimd", version: "0" });
      await client.connect(transport);
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      await client.close();
      await vi.waitFor(async () => {
        const lines = await daemon.auditLines();
        expect(lines.at(-1)).toMatchObject({ oauth_client_id: documents.clientId });
      });
    } finally {
      documents.close();
    }
  });

  it("refuses to fetch a document from a loopback address unless the config allows it (SSRF)", async () => {
    const documents = await documentServer();
    try {
      const { origin } = await gateway(false, documents.cert);
      const res = await fetch(
        authorizeUrl(origin, documents.clientId, randomBytes(32).toString("base64url")),
        { redirect: "manual" },
      );
      expect(res.status).toBe(400);
      expect(res.headers.get("location")).toBeNull();
      expect(await res.text()).toMatch(/client_id metadata document fetch failed/);
      expect(documents.fetched()).toBe(0);
    } finally {
      documents.close();
    }
  });

  it("follows no redirect of a document's URL, and cuts a document that never ends", async () => {
    const documents = await documentServer();
    try {
      const { origin } = await gateway(true, documents.cert);
      for (const name of ["redirect.json", "endless.json"]) {
        const started = performance.now();
        const res = await fetch(
          authorizeUrl(
            origin,
            documents.clientId.replace("client.json", name),
            randomBytes(32).toString("base64url"),
          ),
          { redirect: "manual" },
        );
        expect(res.status).toBe(400);
        expect(res.headers.get("location")).toBeNull();
        expect(await res.text()).toMatch(/client_id metadata document fetch failed/);
        // Refused at the size limit (5 KiB), before the 2.5 s deadline.
        expect(performance.now() - started).toBeLessThan(2_500);
      }
      // The redirect was not followed to the document it names.
      expect(new Set(documents.paths)).toEqual(new Set(["/redirect.json", "/endless.json"]));
    } finally {
      documents.close();
    }
  });
});
