import { defineConfig } from 'vitest/config';

// Two projects, split by file name: `*.test.ts` needs nothing outside the process; `*.int.test.ts` runs
// against the real HAPI FHIR server and redis-server that test/support/global-setup.ts starts.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.int.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts'],
          // One HAPI and one Redis are shared; files run one after another to keep a 2-core machine honest.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
