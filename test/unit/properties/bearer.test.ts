/**
 * Properties of the Authorization header parser: `Bearer` in any case, one or more spaces, then
 * an RFC 6750 §2.1 b64token of at most MAX_TOKEN_LENGTH characters. Checked against generated
 * headers and an independent model of that grammar.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BearerParse,
  looksLikeJWT,
  MAX_TOKEN_LENGTH,
  parseBearer,
} from "../../../src/auth/token-shape.js";

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/** RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
const B64TOKEN_CHARS = `${ALPHANUMERIC}-._~+/`;
/** RFC 9110 §5.6.2 tchar (an auth-scheme is a token). */
const TCHARS = `${ALPHANUMERIC}!#$%&'*+-.^_\`|~`;
/** Where JavaScript's `.` stops: a line break never belongs to credentials. */
const LINE_BREAKS = "\n\r\u2028\u2029";

type Kind = BearerParse["kind"];

function isB64token(text: string): boolean {
  let end = text.length;
  while (end > 0 && text[end - 1] === "=") end--;
  return end > 0 && [...text.slice(0, end)].every((char) => B64TOKEN_CHARS.includes(char));
}

/** The parser's contract, written without regular expressions: the kind, and the token. */
function model(header: string | undefined): { kind: Kind; token?: string } {
  if (header === undefined || header === "") return { kind: "missing" };
  const space = header.indexOf(" ");
  const scheme = space < 0 ? header : header.slice(0, space);
  const schemeIsToken =
    /[A-Za-z]/.test(scheme.charAt(0)) && [...scheme].every((char) => TCHARS.includes(char));
  if (!schemeIsToken) return { kind: "malformed" };
  let credentials = space < 0 ? undefined : header.slice(space);
  while (credentials?.startsWith(" ")) credentials = credentials.slice(1);
  if (scheme.toLowerCase() !== "bearer") {
    // A value without a space is a bare token with no scheme, not another scheme.
    if (credentials === undefined) return { kind: "malformed" };
    return [...credentials].some((char) => LINE_BREAKS.includes(char))
      ? { kind: "malformed" }
      : { kind: "other_scheme" };
  }
  if (credentials === undefined || credentials.length > MAX_TOKEN_LENGTH) {
    return { kind: "malformed" };
  }
  return isB64token(credentials) ? { kind: "token", token: credentials } : { kind: "malformed" };
}

/** The parse without the human-readable reason. */
function parsed(header: string | undefined): { kind: Kind; token?: string } {
  const result = parseBearer(header);
  return result.kind === "token" ? { kind: "token", token: result.token } : { kind: result.kind };
}

const b64token = fc
  .tuple(
    fc.string({
      unit: fc.constantFrom(...B64TOKEN_CHARS),
      minLength: 1,
      maxLength: 200,
      size: "max",
    }),
    fc.string({ unit: fc.constant("="), maxLength: 3 }),
  )
  .map(([body, padding]) => body + padding);
const bearer = fc.mixedCase(fc.constant("bearer"));
const spaces = fc.string({ unit: fc.constant(" "), minLength: 1, maxLength: 4 });
/** A character RFC 6750 does not allow in a token (`=` is allowed, but only at the end). */
const forbidden = fc
  .string({ unit: "binary", minLength: 1, maxLength: 1 })
  .filter((char) => !B64TOKEN_CHARS.includes(char) && char !== "=");

describe("parseBearer (properties)", () => {
  it("reads exactly the token after Bearer in any case and one or more spaces", () => {
    fc.assert(
      fc.property(bearer, spaces, b64token, (scheme, gap, token) => {
        expect(parseBearer(`${scheme}${gap}${token}`)).toEqual({
          kind: "token",
          token,
          jwt: looksLikeJWT(token),
        });
      }),
      { numRuns: 500 },
    );
  });

  it("refuses a token with a character RFC 6750 does not allow, wherever it is", () => {
    fc.assert(
      fc.property(bearer, spaces, b64token, forbidden, fc.nat(), (scheme, gap, token, char, at) => {
        const index = 1 + (at % token.length);
        const header = `${scheme}${gap}${token.slice(0, index)}${char}${token.slice(index)}`;
        expect(parseBearer(header).kind).toBe("malformed");
        // `=` only pads the end.
        expect(parseBearer(`${scheme}${gap}=${token}`).kind).toBe("malformed");
      }),
      { numRuns: 500 },
    );
  });

  it("refuses an empty or over-long token", () => {
    fc.assert(
      fc.property(bearer, fc.string({ unit: fc.constant(" "), maxLength: 4 }), (scheme, gap) => {
        expect(parseBearer(`${scheme}${gap}`)).toMatchObject({ kind: "malformed" });
      }),
      { numRuns: 100 },
    );
    fc.assert(
      fc.property(bearer, fc.integer({ min: 1, max: 64 }), b64token, (scheme, extra, token) => {
        const long = token.repeat(Math.ceil((MAX_TOKEN_LENGTH + extra) / token.length));
        const header = `${scheme} ${long.slice(0, MAX_TOKEN_LENGTH + extra)}`;
        expect(parseBearer(header)).toMatchObject({
          kind: "malformed",
          reason: expect.stringContaining("longer than"),
        });
        const longest = long.replace(/=/g, "A").slice(0, MAX_TOKEN_LENGTH);
        expect(parseBearer(`${scheme} ${longest}`)).toMatchObject({ kind: "token" });
      }),
      { numRuns: 50 },
    );
  });

  it("tells another scheme apart from a bare value without a scheme", () => {
    const scheme = fc
      .tuple(
        fc.constantFrom(...ALPHANUMERIC.slice(0, 52)),
        fc.string({ unit: fc.constantFrom(...TCHARS), maxLength: 12 }),
      )
      .map(([first, rest]) => first + rest)
      .filter((name) => name.toLowerCase() !== "bearer");
    fc.assert(
      fc.property(scheme, spaces, fc.string({ maxLength: 40 }), (name, gap, credentials) => {
        fc.pre(![...credentials].some((char) => LINE_BREAKS.includes(char)));
        expect(parseBearer(`${name}${gap}${credentials}`)).toEqual({ kind: "other_scheme" });
        expect(parseBearer(name).kind).toBe("malformed");
      }),
      { numRuns: 300 },
    );
  });

  it("agrees with the model of the grammar on any header value, and never throws", () => {
    const headerish = fc.string({
      unit: fc.oneof(
        { weight: 10, arbitrary: fc.constantFrom(...B64TOKEN_CHARS) },
        { weight: 3, arbitrary: fc.constantFrom(" ", "=", "\t", "\n", ",", '"', "é", "\0") },
        { weight: 2, arbitrary: fc.constantFrom("Bearer ", "bearer", "BEARER ", "Basic ") },
      ),
      maxLength: 60,
    });
    fc.assert(
      fc.property(
        fc.oneof(
          headerish,
          fc.tuple(bearer, spaces, headerish).map((parts) => parts.join("")),
          fc.string({ maxLength: 80 }),
          fc.string({ unit: "binary", maxLength: 80 }),
        ),
        (header) => {
          expect(parsed(header)).toEqual(model(header));
        },
      ),
      { numRuns: 1500 },
    );
  });
});
