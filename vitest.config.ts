import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Tests never read or write the user's real spool directory.
const spoolDir = mkdtempSync(join(tmpdir(), 'trackspec-test-spool-'));

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    env: { TRACKSPEC_SPOOL_DIR: spoolDir },
  },
});
