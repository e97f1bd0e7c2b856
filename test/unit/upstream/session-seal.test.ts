import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseSessionKey, SessionSealer } from "../../../src/upstream/session-seal.js";

const ROUTE = "/agents/github/mcp";
const TARGET = "http://10.0.0.1:3001/mcp";
const UPSTREAM_ID = "9f1c2e7a-0b4d-4c3e-8a6f-1d2e3f4a5b6c";

describe("SessionSealer", () => {
  const sealer = new SessionSealer(randomBytes(32));

  it("opens what it sealed, for the same scope", () => {
    const sealed = sealer.seal(ROUTE, TARGET, UPSTREAM_ID);
    expect(sealed).toMatch(/^[\x21-\x7e]+$/);
    expect(sealed).not.toContain(UPSTREAM_ID);
    expect(sealer.open(ROUTE, sealed)).toEqual({ target: TARGET, upstreamSessionId: UPSTREAM_ID });
  });

  it("seals the same session differently each time (random IV)", () => {
    expect(sealer.seal(ROUTE, TARGET, UPSTREAM_ID)).not.toBe(
      sealer.seal(ROUTE, TARGET, UPSTREAM_ID),
    );
  });

  it("round-trips non-ASCII targets and empty or long upstream ids", () => {
    for (const id of ["", "x".repeat(2000), "séssion"]) {
      const sealed = sealer.seal(ROUTE, "http://exämple.test/mcp", id);
      expect(sealed).toMatch(/^[\x21-\x7e]+$/);
      expect(sealer.open(ROUTE, sealed)).toEqual({
        target: "http://exämple.test/mcp",
        upstreamSessionId: id,
      });
    }
  });

  it("opens with another instance holding the same key (another replica)", () => {
    const key = randomBytes(32);
    const sealed = new SessionSealer(key).seal(ROUTE, TARGET, UPSTREAM_ID);
    expect(new SessionSealer(key).open(ROUTE, sealed)?.upstreamSessionId).toBe(UPSTREAM_ID);
  });

  it("does not open a tampered id, byte by byte", () => {
    const bytes = Buffer.from(sealer.seal(ROUTE, TARGET, UPSTREAM_ID), "base64url");
    for (let i = 0; i < bytes.length; i++) {
      const tampered = Buffer.from(bytes);
      tampered[i] = (tampered[i] as number) ^ 0x01;
      expect(sealer.open(ROUTE, tampered.toString("base64url")), `byte ${i}`).toBeUndefined();
    }
  });

  it("does not open a truncated or extended id", () => {
    const sealed = sealer.seal(ROUTE, TARGET, UPSTREAM_ID);
    for (const length of [0, 1, 10, 39, sealed.length - 1]) {
      expect(sealer.open(ROUTE, sealed.slice(0, length))).toBeUndefined();
    }
    expect(sealer.open(ROUTE, `${sealed}AA`)).toBeUndefined();
  });

  it("does not open an id sealed for another route", () => {
    const sealed = sealer.seal(ROUTE, TARGET, UPSTREAM_ID);
    expect(sealer.open("/agents/other/mcp", sealed)).toBeUndefined();
    expect(sealer.open("", sealed)).toBeUndefined();
  });

  it("does not open an id sealed with another key", () => {
    const sealed = SessionSealer.random().seal(ROUTE, TARGET, UPSTREAM_ID);
    expect(sealer.open(ROUTE, sealed)).toBeUndefined();
  });

  it("returns undefined for garbage, never throws", () => {
    const garbage = [
      "",
      "not base64!",
      "abc",
      "=====",
      UPSTREAM_ID,
      "A".repeat(100),
      randomBytes(64).toString("base64url"),
      "é".repeat(50),
    ];
    for (const id of garbage) expect(sealer.open(ROUTE, id), id).toBeUndefined();
    // A well-formed layout under another version byte.
    const bytes = Buffer.from(sealer.seal(ROUTE, TARGET, UPSTREAM_ID), "base64url");
    bytes[0] = 2;
    expect(sealer.open(ROUTE, bytes.toString("base64url"))).toBeUndefined();
  });

  it("refuses a key that is not 32 bytes", () => {
    expect(() => new SessionSealer(randomBytes(16))).toThrow(/32 bytes, got 16/);
    expect(() => new SessionSealer(Buffer.alloc(0))).toThrow(/32 bytes/);
  });
});

describe("parseSessionKey", () => {
  const key = randomBytes(32);

  it("accepts 32 bytes in standard or url base64, with or without padding", () => {
    for (const text of [
      key.toString("base64"),
      key.toString("base64url"),
      key.toString("base64").replace(/=+$/, ""),
    ]) {
      expect(parseSessionKey(text)).toEqual(key);
    }
  });

  it("explains what is wrong otherwise", () => {
    expect(parseSessionKey(randomBytes(16).toString("base64"))).toMatch(/decodes to 16 bytes/);
    expect(parseSessionKey(randomBytes(33).toString("base64"))).toMatch(/decodes to 33 bytes/);
    expect(parseSessionKey("")).toMatch(/not base64/);
    expect(parseSessionKey(`${key.toString("base64").slice(0, 20)} !`)).toMatch(/not base64/);
    expect(parseSessionKey(`${"a".repeat(42)}=a`)).toMatch(/not base64/);
  });
});
