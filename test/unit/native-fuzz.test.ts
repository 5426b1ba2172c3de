// The short fuzzing pass of npm test: builds every libFuzzer harness of native/fuzz/ (frame parser,
// checksums, control-message walk, launcher plan, the UDP relay's frames) with AddressSanitizer and UBSan and runs each for
// FUZZ_SECONDS (default 3 here) from its seed corpus in test/corpus/, whose regression inputs (the
// crashes found so far) are replayed first. `npm run fuzz` runs the same harnesses longer (60 s each).
// Skipped only where clang is not installed (.ci/run installs it with its libFuzzer runtime; clang
// without that runtime fails here with the package to install).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { repoRoot } from '../helpers/tapbox.js';

const hasClang = spawnSync('sh', ['-c', 'command -v clang && command -v clang++'], { encoding: 'utf8' }).status === 0;

describe.runIf(hasClang)('libFuzzer harnesses', () => {
  it('build and run without a crash, each executing inputs', () => {
    const seconds = process.env.FUZZ_SECONDS ?? '3';
    const r = spawnSync('bash', [join(repoRoot, 'native', 'fuzz', 'run.sh'), seconds], { encoding: 'utf8', timeout: 240_000 });
    const rows = r.stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/));
    expect(r.stderr + r.stdout).not.toMatch(/ERROR|runtime error/);
    expect(r.status, r.stderr).toBe(0);
    expect(rows.map((row) => row[0])).toEqual(['frames', 'checksum', 'cmsg', 'plan', 'udp_frame']);
    for (const row of rows) {
      expect(Number(row[1])).toBeGreaterThan(1000); // executions
      expect(row[5]).toBe('0'); // crashes
    }
  }, 300_000);
});
