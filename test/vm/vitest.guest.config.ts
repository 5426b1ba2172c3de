import { defineConfig } from 'vitest/config';

// The portability subset the VM lane runs inside each guest kernel (test/vm/lane.test.ts boots
// them). The host's root is read-only there: caches go to /tmp. A tapbox run takes seconds under
// QEMU's TCG, hence the longer timeouts.
export default defineConfig({
  cacheDir: '/tmp/vitest-cache',
  test: {
    include: [
      'test/integration/filesystem.test.ts',
      'test/integration/sandbox.test.ts',
      'test/vm/guest/**/*.test.ts',
    ],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    fileParallelism: false,
  },
});
