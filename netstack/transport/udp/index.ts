export { UdpProtocol } from './protocol.js';
export { UDP_DEFAULTS, type UdpOptions } from './config.js';
