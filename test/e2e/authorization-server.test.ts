/**
 * The embedded authorization server through the built binary: its keys persist in state_dir
 * across a restart, and `mcpgw rotate-signing-key` makes it sign with a new key while the
 * tokens of the previous one stay valid.
 */
import { createHash, randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import { decodeProtectedHeader } from "jose";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { runBin, spawnBin } from "../helpers/bin.js";
import { killDaemons, startDaemon, track } from "../helpers/daemon.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";

const PASSWORD = "rotate-suite-password";
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
  const registered = await fetch(`${origin}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
  });
  const { client_id: clientId } = (await registered.json()) as { client_id: string };
  const verifier = randomBytes(32).toString("base64url");
  const url = new URL(`${origin}/oauth/authorize`);
  url.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: REDIRECT,
    response_type: "code",
    state: "rotate",
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    resource: `${origin}/mcp`,
  }).toString();
  const { redirect } = await logInAndConsent(url, REDIRECT, {
    username: "alice",
    password: PASSWORD,
  });
  const token = await fetch(`${origin}/oauth/token`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: redirect.searchParams.get("code") as string,
      code_verifier: verifier,
      redirect_uri: REDIRECT,
      client_id: clientId,
    }),
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
