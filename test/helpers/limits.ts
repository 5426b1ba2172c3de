// Whether tapbox, run as the test user here, gets whole-sandbox limits (a cgroup v2 delegated to the
// user: the VM lane's guests, most users' machines; or a user systemd to delegate a scope) or per-process ones (cgroup v1 hosts such as the
// development machine): the tests of --memory/--pids/--cpus expect what the host can give.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { asTestUser, repoRoot } from './tapbox.js';

const probe = `import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'supervisor', 'cgroup.js'))}).then((m) => process.stdout.write(m.findCgroupPlace().reason === undefined ? 'cgroup' : 'per-process'))`;
const argv = asTestUser([process.execPath, '--input-type=module', '-e', probe]);
const answer = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: repoRoot }).stdout;
if (answer !== 'cgroup' && answer !== 'per-process') throw new Error(`could not tell how limits hold here (${answer})`);

export const wholeSandboxLimits = answer === 'cgroup';
