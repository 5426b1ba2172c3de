// Which package's script a process runs for, from what package managers put in the environment and
// the command lines of the process tree. Only signs the managers set reliably are read:
//  - npm, yarn, pnpm lifecycle scripts: npm_package_name and npm_lifecycle_event (the manager from
//    npm_config_user_agent, "yarn/1.22.19 npm/? node/...");
//  - cargo build scripts: CARGO_PKG_NAME, in a program named build-script-* (rustc for the crate: "build");
//  - go generate: GOPACKAGE and GOFILE;
//  - pip/setuptools builds: a setup.py, pip's setuptools caller or its PEP 517 hook runner
//    (_in_process.py) on a command line of the chain; the package is the build directory's name (pip
//    unpacks NAME_<hash> there; a local project builds in its own directory).
// All of it is the sandboxed code's own data: good for an audit, not a boundary.
import { basename } from 'node:path';

export interface PackageContext {
  manager: 'npm' | 'yarn' | 'pnpm' | 'cargo' | 'go' | 'pip';
  name: string;
  /** "postinstall", "build script", "generate (gen.go)", "build". */
  script: string;
}

export interface ProcessFacts {
  exe: string;
  argv: string[];
  cwd: string;
  /** The variables of its environment this module reads (see ENV_NAMES). */
  env: Map<string, string>;
}

/** The environment variables package detection reads. */
export const ENV_NAMES = ['npm_package_name', 'npm_lifecycle_event', 'npm_config_user_agent', 'CARGO_PKG_NAME', 'GOPACKAGE', 'GOFILE'] as const;

/**
 * The package context of the nearest process in `chain` (the owner first, then its parents) showing
 * one. `outside`: the environment the sandbox's command started with; a variable with the same value
 * there was inherited from tapbox's caller (say `npx vitest`), not set by a package manager inside.
 */
export function packageContext(chain: ProcessFacts[], outside: Map<string, string> = new Map()): PackageContext | null {
  for (const p of chain) {
    const inside = new Map([...p.env].filter(([name, value]) => outside.get(name) !== value));
    const found = fromEnvironment({ ...p, env: inside }) ?? fromPipBuild(p);
    if (found) return found;
  }
  return null;
}

function fromEnvironment(p: ProcessFacts): PackageContext | null {
  const env = p.env;
  const pkg = env.get('npm_package_name');
  const event = env.get('npm_lifecycle_event');
  if (pkg && event) {
    const agent = /^(npm|yarn|pnpm)\//.exec(env.get('npm_config_user_agent') ?? '')?.[1] as 'npm' | 'yarn' | 'pnpm' | undefined;
    return { manager: agent ?? 'npm', name: pkg, script: event };
  }
  const crate = env.get('CARGO_PKG_NAME');
  if (crate) {
    const buildScript = [p.exe, p.argv[0] ?? ''].some((path) => basename(path).startsWith('build-script-'));
    return { manager: 'cargo', name: crate, script: buildScript ? 'build script' : 'build' };
  }
  const goPackage = env.get('GOPACKAGE');
  const goFile = env.get('GOFILE');
  if (goPackage && goFile) return { manager: 'go', name: goPackage, script: `generate (${goFile})` };
  return null;
}

function fromPipBuild(p: ProcessFacts): PackageContext | null {
  if (!/python/.test(basename(p.exe))) return null;
  // setup.py run directly, pip's legacy caller (python -c "<pip-setuptools-caller> ... setup.py"), or its PEP 517 hook runner.
  const runsBuild = p.argv.some((a) => basename(a) === 'setup.py' || basename(a) === '_in_process.py' || a.includes('<pip-setuptools-caller>'));
  if (!runsBuild || p.cwd === '' || p.cwd === '/') return null;
  // pip builds in .../NAME_<32 hex digits>; a local project builds in its own directory.
  const dir = basename(p.cwd).replace(/_[0-9a-f]{32}$/, '');
  return dir ? { manager: 'pip', name: dir, script: 'build' } : null;
}

/** "node (esbuild postinstall)", "python3 (pip build of foo)", or the executable's name alone. */
export function describeProcess(exe: string, argv: string[], pkg: PackageContext | null): string {
  const program = basename(exe || argv[0] || '?');
  if (!pkg) return program;
  if (pkg.manager === 'pip') return `${program} (pip build of ${pkg.name})`;
  if (pkg.manager === 'go') return `${program} (go ${pkg.script} in ${pkg.name})`;
  return `${program} (${pkg.name} ${pkg.script})`;
}
