import { readFileSync } from "node:fs";

/** mcpgw's version, from package.json (two levels up from dist/src/ and from src/). */
export function version(): string {
  for (const relative of ["../../package.json", "../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), "utf8"));
      if (pkg.name === "mcpgw") return String(pkg.version);
    } catch {
      // Not this layout; try the next.
    }
  }
  return "unknown";
}
