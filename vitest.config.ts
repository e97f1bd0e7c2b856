import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The e2e tests spawn the built binary and several servers; two cores are shared.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
