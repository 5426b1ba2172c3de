// netstack's import graph: no cycle, and every import goes to the same layer or one below it (the
// layering tcpip.ts describes). The graph is read from the sources, so a new import that breaks
// either rule fails here; the fixtures show that the reader and the cycle search can fail.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const NETSTACK = resolve(dirname(fileURLToPath(import.meta.url)), '../../netstack');

/** Every static `import ... from` / `export ... from` / `import '...'` specifier in a TypeScript source. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(/^\s*(?:import|export)\b[^'"`;]*?(?:\bfrom\s*)?['"]([^'"]+)['"]/gm)) found.push(m[1]!);
  return found;
}

/** The graph of relative imports among `files` (absolute path → source); `.js` specifiers name `.ts` files. */
function importGraph(files: Map<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, source] of files) {
    const targets = specifiers(source)
      .filter((s) => s.startsWith('.'))
      .map((s) => resolve(dirname(file), s).replace(/\.js$/, '.ts'));
    graph.set(file, targets);
  }
  return graph;
}

/** One import cycle of the graph as a path that starts and ends on the same file, or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'done') return null;
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

function netstackSources(dir = NETSTACK, out = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) netstackSources(path, out);
    else if (entry.name.endsWith('.ts')) out.set(path, readFileSync(path, 'utf8'));
  }
  return out;
}

/** The layer of a netstack file, lowest first (tcpip.ts's table). */
const LAYERS = ['root', 'header', 'link', 'network', 'transport', 'stack', 'index'];
function layerOf(file: string): number {
  const rel = relative(NETSTACK, file);
  if (rel === 'index.ts' || rel === 'defaults.ts') return LAYERS.indexOf('index');
  if (!rel.includes('/')) return LAYERS.indexOf('root');
  const layer = LAYERS.indexOf(rel.split('/')[0]!);
  if (layer < 0) throw new Error(`${rel}: a folder with no place in the layering`);
  return layer;
}

describe('the import graph reader', () => {
  it('finds a cycle through a multi-line type import, and none in a chain', () => {
    const cyclic = new Map([
      ['/f/a.ts', "import { b } from './b.js';\n"],
      ['/f/b.ts', "// b\nimport type {\n  C,\n} from './sub/c.js';\n"],
      ['/f/sub/c.ts', "export { a } from '../a.js';\n"],
    ]);
    expect(findCycle(importGraph(cyclic))).toEqual(['/f/a.ts', '/f/b.ts', '/f/sub/c.ts', '/f/a.ts']);
    const chain = new Map([
      ['/f/a.ts', "import { b } from './b.js';\nimport { readFileSync } from 'node:fs';\n"],
      ['/f/b.ts', "import './c.js';\n"],
      ['/f/c.ts', 'export const c = 1;\n'],
    ]);
    expect(importGraph(chain).get('/f/b.ts')).toEqual(['/f/c.ts']);
    expect(findCycle(importGraph(chain))).toBeNull();
  });
});

describe('netstack imports', () => {
  const files = netstackSources();
  const graph = importGraph(files);

  it('reads every file of the stack', () => {
    expect(files.size).toBeGreaterThan(50);
    expect(graph.get(join(NETSTACK, 'stack/stack.ts'))).toContain(join(NETSTACK, 'network/host.ts'));
  });

  it('has no import cycle', () => {
    const cycle = findCycle(graph);
    expect(cycle?.map((f) => relative(NETSTACK, f)) ?? null).toBeNull();
  });

  it('imports only downward: a layer never imports one above it', () => {
    const upward: string[] = [];
    for (const [file, targets] of graph) {
      for (const target of targets) {
        if (!target.startsWith(NETSTACK + '/')) continue;
        if (layerOf(target) > layerOf(file)) upward.push(`${relative(NETSTACK, file)} -> ${relative(NETSTACK, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('reaches outside netstack only for the native addon', () => {
    const outside = new Set<string>();
    for (const targets of graph.values()) for (const t of targets) if (!t.startsWith(NETSTACK + '/')) outside.add(relative(NETSTACK, t));
    expect([...outside]).toEqual(['../native/addon/index.ts']);
  });
});
