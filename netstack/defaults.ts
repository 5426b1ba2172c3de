// The stack's defaults alone: the part of the public surface that checking options needs on every run
// (src/options/network-limits.ts). It loads two small config modules and none of the stack, so a run
// without --net tap never loads the stack (docs/architecture.md, "Start-up"). index.ts exports the same.
export { defaultTcpConfig, type TcpConfigInput } from './transport/tcp/config.js';
export { UDP_DEFAULTS, type UdpOptions } from './transport/udp/config.js';
