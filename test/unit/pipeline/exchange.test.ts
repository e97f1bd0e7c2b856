import { describe, expect, it } from "vitest";
import {
  type Exchange,
  type PipelineContext,
  runSteps,
  type Step,
} from "../../../src/pipeline/exchange.js";

// runSteps only passes these through; the steps under test never look at them.
const exchange = {} as Exchange;
const context = {} as PipelineContext;

describe("runSteps", () => {
  it("runs the steps in order, waiting only for the ones that return a promise", async () => {
    const seen: string[] = [];
    const steps: Step[] = [
      () => {
        seen.push("a");
      },
      () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            seen.push("b");
            resolve();
          }, 5),
        ),
      () => {
        seen.push("c");
      },
    ];
    await runSteps(steps, exchange, context);
    expect(seen).toEqual(["a", "b", "c"]);
  });

  it("runs synchronous steps in the same turn: a cached credential costs no extra await", () => {
    const seen: string[] = [];
    const sync =
      (name: string): Step =>
      () => {
        seen.push(name);
      };
    const running = runSteps([sync("a"), sync("b"), sync("c")], exchange, context);
    // Every step has run, and there is nothing to await.
    expect(seen).toEqual(["a", "b", "c"]);
    expect(running).toBeUndefined();
  });

  it("stops at the first step that throws or rejects, with its error", async () => {
    const seen: string[] = [];
    const refused = new Error("refused");
    expect(() =>
      runSteps(
        [
          () => {
            seen.push("a");
          },
          () => {
            throw refused;
          },
          () => {
            seen.push("never");
          },
        ],
        exchange,
        context,
      ),
    ).toThrow(refused);
    await expect(
      runSteps([() => Promise.reject(refused), () => void seen.push("never")], exchange, context),
    ).rejects.toBe(refused);
    // A step that throws after one that waited rejects the run.
    await expect(
      runSteps(
        [
          () => Promise.resolve(),
          () => {
            throw refused;
          },
          () => void seen.push("never"),
        ],
        exchange,
        context,
      ),
    ).rejects.toBe(refused);
    expect(seen).toEqual(["a"]);
  });
});
