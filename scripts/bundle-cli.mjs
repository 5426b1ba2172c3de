// Bundles the CLI as tsc wrote it (dist/src/cli/main.js) into one file in its place: start-up is mostly
// module loading (issue 14), and one file loads in one go where ~100 small ES modules load one by one.
// What only some runs need (the stack and the egress side under --net tap, pretty logs, a pty, the
// image and box verbs' heavy parts, doctor) stays behind a dynamic import() and becomes a chunk next to
// main.js, loaded when used. npm packages stay external (node_modules as installed) but commander, which
// every run loads: as a CommonJS package imported from ES modules it cost ~5-8 ms of CPU more than
// bundled (measured as the test user, issue 14). Its require() of Node's builtins needs a `require` in
// an ES module: the banner makes one.
//
// Each bundled module keeps its own import.meta.url (the file tsc wrote, still in dist/), so the paths
// found from it (the package root, the addon, the boxes' daemon, createRequire) are the unbundled ones.
// The library (dist/src/index.js) is not bundled. Without this step the CLI runs the same, only slower.
import { build } from 'esbuild';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { dependencies } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const BUNDLED_PACKAGES = ['commander'];
const entry = join(root, 'dist', 'src', 'cli', 'main.js');
const outdir = dirname(entry);

const MARK = '// bundled by scripts/bundle-cli.mjs';
if (readFileSync(entry, 'utf8').includes(MARK)) {
  console.log(`${relative(root, entry)} is bundled already; run tsc first to bundle it again.`);
  process.exit(0);
}

// The chunks of the last build (main.NAME-HASH.js: their names change with their content).
for (const name of readdirSync(outdir)) if (/^main\..*\.js(\.map)?$/.test(name)) rmSync(join(outdir, name));

/** import.meta.url of a module, written from the bundle's directory (main.js and its chunks are all there). */
const keepMetaUrl = {
  name: 'keep-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const own = `new URL(${JSON.stringify(relative(outdir, args.path))}, import.meta.url).href`;
      return { contents: source.replaceAll('import.meta.url', own), loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

await build({
  entryPoints: [entry],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: Object.keys(dependencies).filter((name) => !BUNDLED_PACKAGES.includes(name)),
  chunkNames: 'main.[name]-[hash]',
  keepNames: true,
  sourcemap: true,
  allowOverwrite: true,
  plugins: [keepMetaUrl],
  banner: { js: `${MARK}\nimport { createRequire as createRequireForBundle } from 'node:module';\nconst require = createRequireForBundle(import.meta.url);` },
  logLevel: 'warning',
});
