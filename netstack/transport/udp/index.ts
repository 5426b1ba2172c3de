export { UdpProtocol, UDP_DEFAULTS, type UdpOptions } from './protocol.js';
