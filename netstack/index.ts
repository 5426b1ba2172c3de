// The public surface of netstack: everything the supervisor and the egress side (src/) may import.
// src/ imports netstack only through this file, or through ./defaults.ts for the defaults alone.
export { Stack, STACK_DEFAULTS, type StackConfig } from './stack/stack.js';
export { StackCounters } from './stack/counters.js';
export { ManualClock } from './stack/manual-clock.js';
export { realClock, type Clock, type Family, type FlowId, type LimitName, type NetworkInfo, type NetworkSender, type Refusal, type TimerHandle, type TransportProtocol } from './tcpip.js';
export type { Forwarder, TcpConn, TcpForwarderRequest, RelayedUdp, UdpConn, UdpForwarderRequest } from './forwarding.js';
export type { LinkEndpoint, NetworkDispatcher } from './link/endpoint.js';
export { FaultyEndpoint, type FaultyEndpointOptions } from './link/faults.js';
export { ChannelEndpoint, type ChannelOptions, type Faults, type FaultCounts } from './link/channel.js';
export { SnifferEndpoint } from './link/sniffer.js';
export { TapEndpoint, type TapEndpointOptions } from './link/tap.js';
export type { ReassemblyLimits } from './network/fragments.js';
export { UdpProtocol } from './transport/udp/index.js';
export { createTcp, TcpProtocol } from './transport/tcp/index.js';
export { defaultTcpConfig, UDP_DEFAULTS, type TcpConfigInput, type UdpOptions } from './defaults.js';
