import { readFile } from "node:fs/promises";
import { expect, it } from "vitest";
import { configReference } from "../../../src/config/reference.js";

it("docs/configuration.md carries the reference table generated from the schema", async () => {
  const doc = await readFile(new URL("../../../docs/configuration.md", import.meta.url), "utf8");
  expect(doc).toContain(configReference());
});
