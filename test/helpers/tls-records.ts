// TLS records as a server sends them, for tests of the handshake following (src/egress/inspect/tls-follow.ts).

/** The ServerHello.random that makes a ServerHello a HelloRetryRequest (RFC 8446 §4.1.3). */
export const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

export function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

export function record(type: number, fragment: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, 3, 3]), u16(fragment.length), fragment]);
}

/** A ServerHello record: a HelloRetryRequest with HRR_RANDOM, else one choosing `version` (null: no supported_versions, TLS 1.2). */
export function serverHello(random: Buffer, version: number | null = 0x0304): Buffer {
  const ext = version === null ? Buffer.alloc(0) : Buffer.from([0x00, 0x2b, 0x00, 0x02, version >> 8, version & 0xff]);
  const body = Buffer.concat([Buffer.from([3, 3]), random, Buffer.from([0, 0x13, 0x01, 0]), u16(ext.length), ext]);
  return record(0x16, Buffer.concat([Buffer.from([2, 0, body.length >> 8, body.length & 0xff]), body]));
}
