// The TCP transport of netstack: `createTcp` is what the Stack registers for protocol 6.
export { createTcp, TcpProtocol, type TcpDependencies } from './protocol.js';
export { defaultTcpConfig, type TcpConfig, type TcpConfigInput, type KeepaliveConfig } from './config.js';
export type { TcpStats } from './stats.js';
export type { TcpState } from './state.js';
export { TcpConnection } from './conn.js';
