// The passive side of the three-way handshake: what the sandbox's SYN offered, and what we agree to
// (RFC 9293 §3.5, RFC 7323 for window scale and timestamps, RFC 2018 for SACK-permitted). Options
// the peer omitted are omitted from the SYN-ACK too.
import { TCP_TIMESTAMP_OPTION_SPACE } from '../../header/tcp.js';
import type { TcpConfig } from './config.js';
import type { Segment } from './segment.js';

/** RFC 9293 §3.7.1: the MSS assumed when the SYN carries none. */
export const DEFAULT_PEER_MSS_V4 = 536;
export const DEFAULT_PEER_MSS_V6 = 1220;

export interface SynInfo {
  irs: number;
  /** 0 when the SYN carried no MSS option. */
  mss: number;
  /** -1 when absent. */
  windowShift: number;
  sackPermitted: boolean;
  hasTimestamp: boolean;
  tsVal: number;
}

export function synInfoOf(seg: Segment): SynInfo {
  const o = seg.options;
  return {
    irs: seg.seq,
    mss: o.mss,
    windowShift: o.windowShift,
    sackPermitted: o.sackPermitted,
    hasTimestamp: o.hasTimestamp,
    tsVal: o.tsVal,
  };
}

export interface Negotiated {
  /** Payload bytes per segment we send (peer MSS, our MTU, and the timestamp option accounted). */
  sendMss: number;
  /** The MSS we advertise. */
  ourMss: number;
  /** Our window scale shift, or -1 when the option is not used on this connection. */
  receiveShift: number;
  /** The peer's window scale shift (0 without the option). */
  sendShift: number;
  sack: boolean;
  timestamps: boolean;
}

/** The smallest shift that lets the window field express the whole receive buffer. */
export function windowShiftFor(bufferSize: number): number {
  let shift = 0;
  while (shift < 14 && bufferSize >> shift > 0xffff) shift++;
  return shift;
}

export function negotiate(syn: SynInfo, config: TcpConfig, ourMss: number, family: 4 | 6): Negotiated {
  const scaling = config.windowScaling && syn.windowShift >= 0;
  const timestamps = config.timestamps && syn.hasTimestamp;
  const peerMss = syn.mss > 0 ? syn.mss : family === 4 ? DEFAULT_PEER_MSS_V4 : DEFAULT_PEER_MSS_V6;
  const optionSpace = timestamps ? TCP_TIMESTAMP_OPTION_SPACE : 0;
  return {
    sendMss: Math.max(Math.min(peerMss, ourMss) - optionSpace, 64),
    ourMss,
    receiveShift: scaling ? windowShiftFor(config.receiveBufferSize) : -1,
    sendShift: scaling ? syn.windowShift : 0,
    sack: config.sack && syn.sackPermitted,
    timestamps,
  };
}
