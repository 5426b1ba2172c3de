// Bundles the CLI as tsc wrote it (dist/src/cli/main.js) into one CommonJS file beside it, tapbox.cjs,
// and writes V8's code cache for it, which the `tapbox` command (src/cli/bin.cts) runs it with: start-up
// is mostly loading and compiling code (issue 14). One CommonJS file skips the ES module loader (~4 ms)
// and ~100 small modules loaded one by one; the cache skips compiling what every start runs (~15 ms).
// What only some runs need (the stack and the egress side under --net tap, pretty logs, a pty, the
// image and box verbs' heavy parts, doctor) stays behind its dynamic import(): esbuild makes each a
// lazily initialised part of the file, so it is parsed only when first called. npm packages stay
// external (node_modules as installed), except commander, which every run loads.
//
// Each bundled module keeps its own import.meta.url (the file tsc wrote, still in dist/), so the paths
// found from it (the package root, the addon, the boxes' daemon, createRequire) are the unbundled ones.
// The library (dist/src/index.js) is not bundled. Without this step the CLI runs the same, only slower.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { dependencies } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const BUNDLED_PACKAGES = ['commander'];
const outdir = join(root, 'dist', 'src', 'cli');
const entry = join(outdir, 'main.js');
const bundle = join(outdir, 'tapbox.cjs');
const cache = `${bundle}.cache`;

// A cache left from an older bundle must never meet the new one (V8 checks only the source's length).
rmSync(cache, { force: true });

/** import.meta.url of a module, from the bundle's own path at run time (the banner's function: a module's
 * own `require` may shadow the bundle's). */
const keepMetaUrl = {
  name: 'keep-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const own = `moduleUrlForBundle(${JSON.stringify(relative(outdir, args.path))})`;
      return { contents: source.replaceAll('import.meta.url', own), loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

const { metafile } = await build({
  entryPoints: [entry],
  outfile: bundle,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: Object.keys(dependencies).filter((name) => !BUNDLED_PACKAGES.includes(name)),
  sourcemap: true,
  metafile: true,
  plugins: [keepMetaUrl],
  banner: { js: `const moduleUrlForBundle = (path) => new URL(path, require('node:url').pathToFileURL(__filename)).href;` },
  logLevel: 'warning',
});

// A script run through node:vm has no loader for import() (src/cli/bin.cts): npm packages are required.
const dynamic = Object.values(metafile.outputs).flatMap((o) => o.imports).filter((i) => i.external && i.kind === 'dynamic-import');
if (dynamic.length > 0) throw new Error(`bundle-cli: load ${dynamic.map((i) => i.path).join(', ')} with createRequire, not import(): the bundle runs without an ES module loader`);

// The `tapbox` command itself is executable (tsc does not set the bit; npm does only where it links
// bins), so that a symlink to it on the PATH is the command (README's Set up).
chmodSync(join(outdir, 'bin.cjs'), 0o755);

// The cache holds what `--help` compiled: the options, commander and the program's set-up, which every
// run goes through.
const run = spawnSync(process.execPath, [join(outdir, 'bin.cjs'), '--help'], { env: { ...process.env, TAPBOX_WRITE_CODE_CACHE: cache }, stdio: ['ignore', 'ignore', 'inherit'] });
if (run.status !== 0) throw new Error(`bundle-cli: writing the code cache failed (tapbox --help exited ${run.status})`);
