// The README's "## Library" example is checked by the TypeScript compiler against the package's
// published types (dist/src/index.d.ts), so the example can't drift from the API.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { repoRoot } from '../helpers/tapbox.js';

describe('README library example', () => {
  it('type-checks against the published types', () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const example = /## Library\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toMatch(/from 'tapbox'/);
    const dir = mkdtempSync(join(repoRoot, '.readme-example-'));
    try {
      const file = join(dir, 'example.ts');
      writeFileSync(file, example!.replace("from 'tapbox'", `from '${join(repoRoot, 'dist', 'src', 'index.js')}'`));
      const program = ts.createProgram([file], {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        skipLibCheck: true,
        types: ['node'],
      });
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      expect(diagnostics).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
