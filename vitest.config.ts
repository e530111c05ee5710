import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: integration tests spawn CLIs, DHT nodes and an S3 server.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
