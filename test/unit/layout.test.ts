// The import rules of docs/architecture.md ("Folders and what they may import"), checked on every
// import of src/, netstack/ and native/addon/: a part imports only the parts below it, and src/ reaches
// the stack only through netstack/index.ts (or netstack/defaults.ts, its defaults alone). A new folder
// under src/ must be given its place here.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Each part and the parts it may import besides itself. */
const MAY_IMPORT: Record<string, string[]> = {
  errors: [],
  units: ['errors'],
  native: [],
  netstack: ['native'],
  policy: ['errors', 'native'],
  egress: ['errors', 'units', 'native', 'netstack', 'policy'],
  options: ['errors', 'units', 'netstack', 'egress', 'policy'],
  idmap: ['errors', 'native'],
  images: ['errors', 'units', 'native', 'idmap'],
  config: ['errors'],
  supervisor: ['errors', 'units', 'native', 'netstack', 'options', 'egress', 'policy', 'idmap'],
  boxes: ['errors', 'units', 'native', 'netstack', 'options', 'egress', 'policy', 'supervisor'],
  cli: ['errors', 'units', 'native', 'netstack', 'options', 'egress', 'policy', 'supervisor', 'idmap', 'images', 'boxes', 'config', 'library'],
  library: ['errors', 'units', 'native', 'netstack', 'options', 'egress', 'policy', 'supervisor', 'idmap', 'images', 'boxes'],
};

/** The part a file belongs to, by its path from the repository root. */
function partOf(path: string): string {
  if (path === 'src/errors.ts') return 'errors';
  if (path === 'src/units.ts') return 'units';
  if (path === 'src/index.ts') return 'library';
  if (path.startsWith('native/addon/')) return 'native';
  if (path.startsWith('netstack/')) return 'netstack';
  if (path.startsWith('src/egress/policy/')) return 'policy';
  const folder = /^src\/([^/]+)\//.exec(path)?.[1];
  if (folder && folder in MAY_IMPORT) return folder;
  throw new Error(`${path} is in no part: give its folder a place in test/unit/layout.test.ts and docs/architecture.md`);
}

/** The repository-relative paths of the relative imports (and re-exports) in `text`, written in `file`. */
function importsOf(file: string, text: string): string[] {
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]);
  return specs.map((spec) => normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts'));
}

/** Why importing `target` from `file` breaks the rules, or null. */
function violation(file: string, target: string): string | null {
  const from = partOf(file);
  const to = partOf(target);
  // netstack/defaults.ts is the defaults alone, for the options checked on every run (docs/architecture.md, "Start-up").
  const surface = target === 'netstack/index.ts' || target === 'netstack/defaults.ts';
  if (file.startsWith('src/') && to === 'netstack' && !surface) return `${file} imports netstack internals (${target}); import from netstack/index.ts`;
  if (from === to || MAY_IMPORT[from].includes(to)) return null;
  return `${file} (${from}) imports ${target} (${to})`;
}

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return sources(path);
    return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : [];
  });
}

describe('import rules', () => {
  it('every import of src/, netstack/ and native/addon/ goes to a part its part may import', () => {
    const files = [...sources('src'), ...sources('netstack'), ...sources('native/addon')];
    expect(files.length).toBeGreaterThan(50);
    const broken = files.flatMap((file) => importsOf(file, readFileSync(join(root, file), 'utf8')).map((target) => violation(file, target)).filter((v) => v !== null));
    expect(broken).toEqual([]);
  });

  it('catches the imports the rules forbid', () => {
    const text = "import { x } from '../../../netstack/stack/stack.js';\nimport type { y } from '../../supervisor/cgroup.js';\n";
    const targets = importsOf('src/egress/policy/policy.ts', text);
    expect(targets).toEqual(['netstack/stack/stack.ts', 'src/supervisor/cgroup.ts']);
    expect(violation('src/egress/policy/policy.ts', targets[0])).toMatch(/netstack internals/);
    expect(violation('src/egress/policy/policy.ts', targets[1])).toMatch(/\(policy\) imports .* \(supervisor\)/);
    expect(violation('src/egress/forwarder/tcp.ts', 'src/cli/main.ts')).not.toBeNull();
    expect(violation('netstack/header/checksum.ts', 'src/errors.ts')).not.toBeNull();
    expect(violation('src/cli/main.ts', 'src/supervisor/sandbox.ts')).toBeNull();
    expect(violation('src/options/network-limits.ts', 'netstack/defaults.ts')).toBeNull();
    expect(violation('src/options/network-limits.ts', 'netstack/transport/tcp/config.ts')).toMatch(/netstack internals/);
    expect(() => partOf('src/newpart/x.ts')).toThrow(/no part/);
  });
});

describe('docs/architecture.md', () => {
  it('names only paths that exist', () => {
    const text = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');
    const paths = [...new Set(text.match(/\b(?:src|netstack|native|test|bench|docs)\/[\w./-]*[\w/]/g) ?? [])];
    expect(paths.length).toBeGreaterThan(40);
    const missing = paths.filter((p) => !existsSync(join(root, p.replace(/\/$/, ''))));
    expect(missing).toEqual([]);
  });
});
