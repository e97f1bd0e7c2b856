/**
 * deploy/k8s/ is what operators apply: its ConfigMap's mcpgw.yaml must be a config the gateway
 * accepts, every `${VAR}` in it must come from the Deployment's environment, and the probes and
 * ports must be the gateway's.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../../../src/config/load.js";

const DIR = path.join(import.meta.dirname, "../../../deploy/k8s");

interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: Record<string, unknown>;
}

const manifests: Manifest[] = readdirSync(DIR)
  .filter((file) => file.endsWith(".yaml"))
  .flatMap((file) =>
    parseAllDocuments(readFileSync(path.join(DIR, file), "utf8")).map((doc) => {
      expect(doc.errors, file).toEqual([]);
      return doc.toJS() as Manifest;
    }),
  );

const of = (kind: string) => {
  const found = manifests.find((manifest) => manifest.kind === kind);
  if (!found) throw new Error(`no ${kind} in deploy/k8s`);
  return found;
};

describe("deploy/k8s", () => {
  const configText = of("ConfigMap").data?.["mcpgw.yaml"] ?? "";
  const container = (
    of("Deployment").spec as {
      template: { spec: { containers: Record<string, unknown>[] } };
    }
  ).template.spec.containers[0] as {
    args: string[];
    env: { name: string }[];
    ports: { name: string; containerPort: number }[];
    readinessProbe: { httpGet: { path: string } };
    livenessProbe: { httpGet: { path: string } };
  };

  it("carries a config the gateway accepts, with every ${VAR} from the Deployment's env", () => {
    const variables = [...configText.matchAll(/\$\{([A-Z0-9_]+)\}/g)].map((match) => match[1]);
    expect(variables.length).toBeGreaterThan(0);
    const env = Object.fromEntries(container.env.map(({ name }) => [name, "x".repeat(44)]));
    for (const name of variables) expect(Object.keys(env), name).toContain(name);
    // sessions.key must be 32 bytes of base64, as `mcpgw gen-key --session` prints it.
    env.MCPGW_SESSION_KEY = Buffer.alloc(32, 7).toString("base64");
    const config = parseConfig(configText, "configmap/mcpgw.yaml", env);
    expect(config.reload.watch).toBe(true);
    expect(config.store.type).toBe("redis");
    expect(container.args).toEqual(["run", "--config", "/etc/mcpgw/mcpgw.yaml"]);
    expect(container.ports[0]?.containerPort).toBe(config.listen.port);
    expect(config.listen.host).toBe("0.0.0.0");
  });

  it("probes the gateway's readiness and health endpoints, and drains longer than shutdown", () => {
    expect(container.readinessProbe.httpGet.path).toBe("/readyz");
    expect(container.livenessProbe.httpGet.path).toBe("/healthz");
    const env = Object.fromEntries(container.env.map(({ name }) => [name, "x".repeat(44)]));
    env.MCPGW_SESSION_KEY = Buffer.alloc(32, 7).toString("base64");
    const config = parseConfig(configText, "configmap/mcpgw.yaml", env);
    const grace = (
      of("Deployment").spec as { template: { spec: { terminationGracePeriodSeconds: number } } }
    ).template.spec.terminationGracePeriodSeconds;
    expect(grace * 1000).toBeGreaterThan(config.shutdown_timeout + 5_000);
    expect((of("PodDisruptionBudget").spec as { minAvailable: number }).minAvailable).toBe(1);
    expect(of("Service").metadata.name).toBe("mcpgw");
  });
});
