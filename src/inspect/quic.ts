// The server name of a QUIC (version 1) connection, from the client's Initial packets. Initial packets
// are encrypted, but with keys anyone can derive from the packet's Destination Connection ID
// (RFC 9001 §5.2): HKDF with the version-1 salt, AES-128-GCM for the payload, AES-ECB for the header
// protection (§5.4.3). The payload's CRYPTO frames carry the TLS ClientHello, which may span several
// Initial packets and arrive out of order, so the reader collects frames by offset across datagrams.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { parseHandshakeMessage, type HelloResult } from './tls.js';

export type QuicResult = HelloResult | { status: 'not-quic' };

const QUIC_V1 = 0x00000001;
const INITIAL_SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
const MAX_CRYPTO_BYTES = 64 * 1024;

export interface InitialKeys {
  key: Buffer;
  iv: Buffer;
  hp: Buffer;
}

/** The client's Initial packet protection keys for a Destination Connection ID (RFC 9001 §5.2). */
export function clientInitialKeys(dcid: Buffer): InitialKeys {
  const secret = Buffer.from(hkdfSync('sha256', dcid, INITIAL_SALT_V1, hkdfLabel('client in', 32), 32));
  return { key: expandLabel(secret, 'quic key', 16), iv: expandLabel(secret, 'quic iv', 12), hp: expandLabel(secret, 'quic hp', 16) };
}

/** The TLS 1.3 HkdfLabel structure (RFC 8446 §7.1) with an empty context. */
function hkdfLabel(label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'latin1');
  return Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
}

/** HKDF-Expand for outputs of at most one SHA-256 block (node:crypto's hkdf always extracts first). */
function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  return createHmac('sha256', secret)
    .update(Buffer.concat([hkdfLabel(label, length), Buffer.from([1])]))
    .digest()
    .subarray(0, length);
}

/** Reads the ClientHello out of the client's first datagrams of a UDP flow. */
export class QuicClientHelloReader {
  private readonly crypto = new Map<number, Buffer>();
  private cryptoBytes = 0;

  /** Feeds one datagram from the client. */
  push(datagram: Buffer): QuicResult {
    let offset = 0;
    let sawInitial = false;
    while (offset < datagram.length) {
      const packet = parseLongHeader(datagram, offset);
      if (packet === null) break; // a short-header packet or padding ends the long-header packets
      if (packet === 'invalid') return sawInitial || this.crypto.size ? { status: 'invalid', reason: 'malformed QUIC packet' } : { status: 'not-quic' };
      if (packet.version !== QUIC_V1) return { status: 'not-quic' };
      if (packet.type === 'initial') {
        sawInitial = true;
        const payload = decryptInitial(datagram, packet);
        if (!payload) return { status: 'invalid', reason: 'QUIC Initial packet does not decrypt' };
        const error = this.collectCrypto(payload);
        if (error) return { status: 'invalid', reason: error };
      }
      offset = packet.end;
    }
    if (!sawInitial && this.crypto.size === 0) return { status: 'not-quic' };
    return parseHandshakeMessage(this.contiguousCrypto());
  }

  /** Records the CRYPTO frames of a decrypted Initial payload; an error text when it is malformed. */
  private collectCrypto(payload: Buffer): string | null {
    const r = new VarintReader(payload);
    while (r.remaining > 0) {
      const type = r.varint();
      if (type === 0x00 || type === 0x01) continue; // PADDING, PING
      if (type === 0x02 || type === 0x03) {
        // ACK: largest, delay, range count, first range, ranges, [ECN counts]
        r.varint();
        r.varint();
        const ranges = r.varint();
        r.varint();
        for (let i = 0; i < ranges * 2 + (type === 0x03 ? 3 : 0) && !r.failed; i++) r.varint();
      } else if (type === 0x06) {
        const at = r.varint();
        const data = r.bytes(r.varint());
        if (r.failed) break;
        this.cryptoBytes += data.length;
        if (this.cryptoBytes > MAX_CRYPTO_BYTES) return 'QUIC CRYPTO data too large';
        this.crypto.set(at, Buffer.from(data));
      } else if (type === 0x1c || type === 0x1d) {
        return 'QUIC connection closed in the Initial';
      } else {
        return `unexpected frame type ${type} in a QUIC Initial`;
      }
      if (r.failed) break;
    }
    return r.failed ? 'truncated frame in a QUIC Initial' : null;
  }

  /** The CRYPTO stream from offset 0 up to the first gap. */
  private contiguousCrypto(): Buffer {
    const parts: Buffer[] = [];
    let end = 0;
    for (const [at, data] of [...this.crypto].sort((a, b) => a[0] - b[0])) {
      if (at > end) break;
      if (at + data.length > end) parts.push(data.subarray(end - at));
      end = Math.max(end, at + data.length);
    }
    return Buffer.concat(parts);
  }
}

interface LongHeader {
  version: number;
  type: 'initial' | 'other';
  dcid: Buffer;
  /** Offset of the (protected) packet number, and of the first byte after the packet. */
  pnOffset: number;
  end: number;
  start: number;
}

/** A long-header packet at `offset`: null when none starts there, 'invalid' when it is malformed. */
function parseLongHeader(buf: Buffer, offset: number): LongHeader | null | 'invalid' {
  const first = buf[offset];
  if ((first & 0x80) === 0) return null;
  if ((first & 0x40) === 0 || buf.length < offset + 7) return 'invalid';
  const version = buf.readUInt32BE(offset + 1);
  const r = new VarintReader(buf.subarray(offset + 5));
  const dcid = r.bytes(r.u8());
  r.bytes(r.u8()); // source connection id
  if (r.failed || dcid.length > 20) return 'invalid';
  if (version !== QUIC_V1) return { version, type: 'other', dcid, pnOffset: 0, end: buf.length, start: offset };
  const kind = (first & 0x30) >> 4;
  if (kind === 3) return { version, type: 'other', dcid, pnOffset: 0, end: buf.length, start: offset }; // Retry: no length
  if (kind === 0) r.bytes(r.varint()); // Initial: token
  const length = r.varint();
  if (r.failed) return 'invalid';
  const pnOffset = offset + 5 + r.position;
  const end = pnOffset + length;
  if (end > buf.length || length < 20) return 'invalid';
  return { version, type: kind === 0 ? 'initial' : 'other', dcid, pnOffset, end, start: offset };
}

/** Removes header protection and decrypts an Initial packet's payload; null when it fails. */
function decryptInitial(buf: Buffer, p: LongHeader): Buffer | null {
  const keys = clientInitialKeys(p.dcid);
  const sample = buf.subarray(p.pnOffset + 4, p.pnOffset + 20);
  const ecb = createCipheriv('aes-128-ecb', keys.hp, null);
  const mask = ecb.update(sample);
  const header = Buffer.from(buf.subarray(p.start, p.pnOffset + 4));
  header[0] ^= mask[0] & 0x0f;
  const pnLength = (header[0] & 0x03) + 1;
  const pnAt = p.pnOffset - p.start;
  let pn = 0;
  for (let i = 0; i < pnLength; i++) {
    header[pnAt + i] ^= mask[1 + i];
    pn = pn * 256 + header[pnAt + i];
  }
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 4; i++) nonce[11 - i] ^= (pn >>> (8 * i)) & 0xff;
  const body = buf.subarray(p.pnOffset + pnLength, p.end);
  if (body.length < 16) return null;
  try {
    const gcm = createDecipheriv('aes-128-gcm', keys.key, nonce);
    gcm.setAAD(header.subarray(0, pnAt + pnLength));
    gcm.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([gcm.update(body.subarray(0, body.length - 16)), gcm.final()]);
  } catch {
    return null;
  }
}

/** A bounds-checked cursor with QUIC variable-length integers (RFC 9000 §16). */
class VarintReader {
  failed = false;
  position = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.position;
  }

  u8(): number {
    if (this.remaining < 1) return this.fail();
    return this.buf[this.position++];
  }

  varint(): number {
    if (this.remaining < 1) return this.fail();
    const length = 1 << (this.buf[this.position] >> 6);
    if (this.remaining < length) return this.fail();
    let value = this.buf[this.position] & 0x3f;
    for (let i = 1; i < length; i++) value = value * 256 + this.buf[this.position + i];
    this.position += length;
    return value;
  }

  bytes(n: number): Buffer {
    if (this.failed || this.remaining < n) {
      this.fail();
      return Buffer.alloc(0);
    }
    const out = this.buf.subarray(this.position, this.position + n);
    this.position += n;
    return out;
  }

  private fail(): number {
    this.failed = true;
    this.position = this.buf.length;
    return 0;
  }
}
