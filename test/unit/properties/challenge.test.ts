/**
 * Properties of the WWW-Authenticate challenge (RFC 6750 §3, RFC 9110 §11.6.1): whatever the
 * error description (it can carry token values, such as a JWT's `typ`), the required scopes
 * and the resource metadata URL hold, the header is a valid field value, every parameter is a
 * quoted-string, and parsing it back gives each value, or its documented sanitized form.
 */
import { validateHeaderValue } from "node:http";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildChallenge, REALM } from "../../../src/auth/challenge.js";
import { AuthError, type AuthResult } from "../../../src/auth/principal.js";
import { AUTH_RESULTS } from "../../../src/errors.js";

/** RFC 9110 §5.6.2 tchar. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * A strict parser of `Bearer auth-param *( OWS "," OWS auth-param )` (RFC 9110 §11.6.1) where
 * every auth-param value is a quoted-string: the parameters in order, quoted-pairs undone.
 * Throws where the header leaves that grammar.
 */
function parseChallenge(header: string): [string, string][] {
  const scheme = "Bearer ";
  if (!header.startsWith(scheme)) throw new Error(`not a Bearer challenge: ${header}`);
  const params: [string, string][] = [];
  let at = scheme.length;
  for (;;) {
    const equals = header.indexOf("=", at);
    const name = header.slice(at, equals);
    if (equals < 0 || !TOKEN.test(name)) throw new Error(`bad auth-param name at ${at}`);
    at = equals + 1;
    if (header[at] !== '"') throw new Error(`value at ${at} is not a quoted-string`);
    at++;
    let value = "";
    for (;;) {
      const char = header[at];
      if (char === undefined) throw new Error("unterminated quoted-string");
      const code = char.charCodeAt(0);
      at++;
      if (char === '"') break;
      if (char === "\\") {
        const escaped = header[at];
        if (escaped === undefined) throw new Error("unterminated quoted-pair");
        value += escaped;
        at++;
      } else if (code === 0x09 || (code >= 0x20 && code !== 0x7f && code <= 0xff)) {
        // qdtext: HTAB / SP / VCHAR but DQUOTE and backslash / obs-text
        value += char;
      } else {
        throw new Error(`character U+${code.toString(16)} is not allowed in a quoted-string`);
      }
    }
    params.push([name, value]);
    if (at === header.length) return params;
    const separator = /^[ \t]*,[ \t]*/.exec(header.slice(at));
    if (!separator) throw new Error(`expected "," at ${at}`);
    at += separator[0].length;
  }
}

/**
 * The documented sanitized form, checked one UTF-16 unit at a time: printable ASCII stays, `"`
 * and `\` become `'` (RFC 6750 §3 forbids them), anything else becomes `?`.
 */
function expectSanitized(received: string | undefined, original: string): void {
  let want = "";
  for (let i = 0; i < original.length; i++) {
    const code = original.charCodeAt(i);
    const char = original.charAt(i);
    want += char === '"' || char === "\\" ? "'" : code >= 0x20 && code <= 0x7e ? char : "?";
  }
  expect(received).toBe(want);
}

/** Text that tries to break out: line breaks, NUL, quotes, backslashes, non-ASCII, commas. */
const hostile = fc.string({
  unit: fc.oneof(
    { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 1 }) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        "\r",
        "\n",
        "\r\n",
        "\0",
        '"',
        "\\",
        '\\"',
        ",",
        "=",
        "\t",
        "\x7f",
        "\x85",
        "\u2028",
        "é",
        "\u{1f511}",
        "\ud800",
        'x", error="forged',
        "\r\nSet-Cookie: a=b",
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  ),
  maxLength: 40,
});

const result = fc.constantFrom(...(Object.keys(AUTH_RESULTS) as Exclude<AuthResult, "ok">[]));

describe("buildChallenge (properties)", () => {
  it("writes a valid header of quoted-strings that parses back to each value, sanitized", () => {
    fc.assert(
      fc.property(
        result,
        hostile,
        fc.array(hostile, { maxLength: 4 }),
        fc.option(hostile, { nil: undefined }),
        (code, description, scopes, resourceMetadataUrl) => {
          const error = new AuthError(code, description, { requiredScopes: scopes });
          const header = buildChallenge(
            error,
            resourceMetadataUrl === undefined ? {} : { resourceMetadataUrl },
          );
          // What Node's http would refuse to send (CR, LF, NUL, ...): the response would fail.
          expect(() => validateHeaderValue("www-authenticate", header)).not.toThrow();
          expect(header).not.toMatch(/[\r\n\0]/);
          // RFC 6750 §3: every value within %x20-21 / %x23-5B / %x5D-7E.
          expect(header).toMatch(/^[\x20-\x7e]*$/);

          const params = parseChallenge(header);
          const names = params.map(([name]) => name);
          const value = (name: string) => params.find(([key]) => key === name)?.[1];
          const expected = ["realm"];
          if (resourceMetadataUrl) expected.push("resource_metadata");
          if (error.oauthError) expected.push("error", "error_description");
          if (error.oauthError === "insufficient_scope") expected.push("scope");
          expect(names).toEqual(expected);
          expect(value("realm")).toBe(REALM);
          if (resourceMetadataUrl) expectSanitized(value("resource_metadata"), resourceMetadataUrl);
          if (error.oauthError) {
            expect(value("error")).toBe(error.oauthError);
            expectSanitized(value("error_description"), description);
          }
          if (error.oauthError === "insufficient_scope") {
            expectSanitized(value("scope"), scopes.join(" "));
          }
        },
      ),
      { numRuns: 600 },
    );
  });

  it("keeps printable values other than quotes and backslashes exactly", () => {
    const printable = fc.string({
      unit: fc
        .integer({ min: 0x20, max: 0x7e })
        .map((code) => String.fromCharCode(code))
        .filter((char) => char !== '"' && char !== "\\"),
      maxLength: 60,
    });
    fc.assert(
      fc.property(printable, printable, (description, url) => {
        const header = buildChallenge(new AuthError("bad_signature", description), {
          resourceMetadataUrl: `https://${url}`,
        });
        expect(parseChallenge(header)).toEqual([
          ["realm", REALM],
          ["resource_metadata", `https://${url}`],
          ["error", "invalid_token"],
          ["error_description", description],
        ]);
      }),
      { numRuns: 300 },
    );
  });

  it("gives no error code to a request without credentials (RFC 6750 §3.1)", () => {
    fc.assert(
      fc.property(hostile, (description) => {
        expect(buildChallenge(new AuthError("missing", description))).toBe(
          `Bearer realm="${REALM}"`,
        );
      }),
      { numRuns: 100 },
    );
  });
});
