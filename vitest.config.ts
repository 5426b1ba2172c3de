import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/vm/guest/ runs inside the VM lane's guests only (test/vm/lane.test.ts).
    exclude: ['test/vm/guest/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests share the test host and the unprivileged user: run files one at a time.
    fileParallelism: false,
  },
});
