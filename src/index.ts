// tapbox as a library: the CLI is a thin layer over these.
export { Sandbox, type SandboxResult } from './sandbox.js';
export { TapboxError, type TapboxErrorCode } from './errors.js';
export { type SandboxOptions, type NetMode, type UidMode, SANDBOX_NET, DEFAULT_MTU } from './options.js';
export { hostChecks, type Check } from './doctor.js';
