/** What the Node peers share: their arguments, the JWT check and the request log. */
import { createRemoteJWKSet, type JWTVerifyGetKey, jwtVerify } from "jose";
import { type Logger, pino } from "pino";
import { requireUrlArgument } from "../protocol.js";

export interface PeerSettings {
  upstream: URL;
  keys: JWTVerifyGetKey;
  issuer: string;
  audience: string;
  log: Logger;
}

export function peerSettings(name: string): PeerSettings {
  const usage = `node dist/bench/peers/${name}.js <upstream URL> <JWKS URL> <issuer> <audience> <log file>`;
  const [upstream, jwks, issuer, audience, logFile] = process.argv.slice(2);
  if (issuer === undefined || audience === undefined || logFile === undefined) {
    throw new Error(`usage: ${usage}`);
  }
  return {
    upstream: requireUrlArgument(upstream, usage),
    keys: createRemoteJWKSet(requireUrlArgument(jwks, usage)),
    issuer,
    audience,
    // Asynchronous writes, as a production pino setup has them.
    log: pino(pino.destination({ dest: logFile, sync: false })),
  };
}

/** The token's subject when the bearer JWT verifies, else undefined. */
export async function verifyBearer(
  settings: PeerSettings,
  header: string | undefined,
): Promise<string | undefined> {
  if (header === undefined || !header.startsWith("Bearer ")) return undefined;
  try {
    const { payload } = await jwtVerify(header.slice(7), settings.keys, {
      issuer: settings.issuer,
      audience: settings.audience,
    });
    return payload.sub ?? "";
  } catch {
    return undefined;
  }
}
