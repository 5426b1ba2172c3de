// The server name of a QUIC (version 1) connection, from the client's Initial packets. Initial packets
// are encrypted, but with keys anyone can derive from the packet's Destination Connection ID
// (RFC 9001 §5.2): HKDF with the version-1 salt, AES-128-GCM for the payload, AES-ECB for the header
// protection (§5.4.3). The payload's CRYPTO frames carry the TLS ClientHello, which may span several
// Initial packets and arrive out of order, so the reader collects frames by offset across datagrams.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { offersEarlyData, parseHandshakeMessage, type HelloResult } from './tls.js';

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

/** The smallest UDP payload that may carry a client's Initial packet (RFC 9000 §14.1: servers drop smaller ones). */
export const MIN_INITIAL_DATAGRAM = 1200;

/**
 * Reads the ClientHellos of one QUIC connection out of its client's Initial packets, from the first
 * datagram to the last: the Initial packets it sends to the server's chosen connection IDs are
 * protected with the same keys (those of the first Destination Connection ID, RFC 9001 §5.2), and
 * after a HelloRetryRequest its second ClientHello follows the first in the same CRYPTO stream. The
 * first ClientHello is the result; every later one must name the same server, without ECH. A datagram
 * carrying an Initial must be at least 1200 bytes, as servers drop smaller ones, and a connection's
 * first Initial (when the reader learns its ID) must name an ID of at least 8 bytes.
 */
export class QuicClientHelloReader {
  /** The CRYPTO stream received so far, and which of its bytes were received. */
  private stream = Buffer.alloc(0);
  private have = new Uint8Array(0);
  private contiguous = 0;
  private cryptoBytes = 0;
  private sawCrypto = false;
  private keys: InitialKeys | null = null;
  /** Where the next whole handshake message starts in the stream. */
  private parsed = 0;
  private first: HelloResult = { status: 'incomplete' };
  /** Whether the first ClientHello offers early data: only then may 0-RTT packets follow. */
  earlyData = false;
  /**
   * The Destination Connection ID whose keys protect the connection's Initial packets: given, or that
   * of the first one read. Initial packets those keys don't open are refused.
   */
  constructor(public dcid: Buffer | null = null) {}

  /** Whether `datagram`'s first Initial packet belongs to this connection: addressed to its ID, or protected with its keys. */
  owns(datagram: Buffer): boolean {
    if (this.dcid === null) return false;
    const packet = parseLongHeader(datagram, 0);
    if (packet === null || packet === 'invalid' || packet.type !== 'initial' || packet.version !== QUIC_V1) return false;
    return packet.dcid.equals(this.dcid) || decryptInitial(datagram, packet, this.initialKeys()) !== null;
  }

  /** Feeds one datagram from the client. */
  push(datagram: Buffer): QuicResult {
    let offset = 0;
    let sawInitial = false;
    while (offset < datagram.length) {
      const packet = parseLongHeader(datagram, offset);
      if (packet === null) break; // a short-header packet or padding ends the long-header packets
      if (packet === 'invalid') return sawInitial || this.sawCrypto ? { status: 'invalid', reason: 'malformed QUIC packet' } : { status: 'not-quic' };
      if (packet.version !== QUIC_V1) return this.sawCrypto ? { status: 'invalid', reason: 'a QUIC packet of another version on a version 1 connection' } : { status: 'not-quic' };
      if (packet.type === 'initial') {
        if (datagram.length < MIN_INITIAL_DATAGRAM) return { status: 'invalid', reason: `QUIC Initial in a datagram of ${datagram.length} bytes (clients pad them to ${MIN_INITIAL_DATAGRAM})` };
        if (this.dcid === null) {
          // A client's first Initial names an unpredictable ID of at least 8 bytes (RFC 9000 §7.2).
          if (packet.dcid.length < 8) return { status: 'invalid', reason: `QUIC first Initial to a ${packet.dcid.length}-byte connection ID (clients choose at least 8)` };
          this.dcid = Buffer.from(packet.dcid);
        }
        sawInitial = true;
        const mine = packet.dcid.equals(this.dcid);
        const payload = decryptInitial(datagram, packet, this.initialKeys());
        // One connection per reader: a second connection's ClientHello must not mix with the first's.
        if (!payload) return { status: 'invalid', reason: mine ? 'QUIC Initial packet does not decrypt' : 'QUIC Initial packets of two connections' };
        const error = this.collectCrypto(payload);
        if (error) return { status: 'invalid', reason: error };
      }
      offset = packet.end;
    }
    if (!sawInitial && !this.sawCrypto) return { status: 'not-quic' };
    return this.readHellos();
  }

  private initialKeys(): InitialKeys {
    return (this.keys ??= clientInitialKeys(this.dcid!));
  }

  /** Reads the whole handshake messages received so far: ClientHellos only, later ones like the first. */
  private readHellos(): QuicResult {
    for (;;) {
      if (this.first.status === 'invalid') return this.first;
      const rest = this.stream.subarray(this.parsed, this.contiguous);
      if (rest.length < 4) break;
      const length = 4 + rest.readUIntBE(1, 3);
      if (rest[0] !== 1) return (this.first = { status: 'invalid', reason: 'a QUIC Initial carries a handshake message other than a ClientHello' });
      if (rest.length < length) break;
      const message = rest.subarray(0, length);
      const hello = parseHandshakeMessage(message);
      this.parsed += length;
      if (hello.status !== 'ok') return (this.first = hello.status === 'invalid' ? hello : { status: 'invalid', reason: 'truncated ClientHello' });
      if (this.first.status === 'incomplete') {
        this.first = hello;
        this.earlyData = offersEarlyData(message);
      } else if (hello.ech) {
        return (this.first = { status: 'invalid', reason: 'a later QUIC ClientHello with an encrypted ClientHello (ECH)' });
      } else if (hello.sni !== this.first.sni) {
        return (this.first = { status: 'invalid', reason: `a later QUIC ClientHello names ${hello.sni ?? 'no server'}, the first named ${this.first.sni ?? 'none'}` });
      }
    }
    if (this.first.status === 'incomplete' && this.contiguous > 0 && this.stream[0] !== 1) return { status: 'invalid', reason: 'first handshake message is not a ClientHello' };
    return this.first;
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
        const error = this.storeCrypto(at, data);
        if (error) return error;
      } else if (type === 0x1c || type === 0x1d) {
        return 'QUIC connection closed in the Initial';
      } else {
        return `unexpected frame type ${type} in a QUIC Initial`;
      }
      if (r.failed) break;
    }
    return r.failed ? 'truncated frame in a QUIC Initial' : null;
  }

  /**
   * Places CRYPTO data at its offset. A server keeps the first bytes it received at an offset (later
   * ones are retransmissions), so this does too, and data that differs from bytes already held is
   * refused: the server and this check must never read two different ClientHellos.
   */
  private storeCrypto(at: number, data: Buffer): string | null {
    this.sawCrypto = true;
    this.cryptoBytes += data.length;
    const end = at + data.length;
    if (this.cryptoBytes > MAX_CRYPTO_BYTES || end > MAX_CRYPTO_BYTES) return 'QUIC CRYPTO data too large';
    if (end > this.stream.length) {
      const size = Math.min(MAX_CRYPTO_BYTES, Math.max(end, this.stream.length * 2, 2048));
      const stream = Buffer.alloc(size);
      this.stream.copy(stream);
      const have = new Uint8Array(size);
      have.set(this.have);
      this.stream = stream;
      this.have = have;
    }
    for (let i = 0; i < data.length; i++) {
      const p = at + i;
      if (this.have[p] === 0) {
        this.have[p] = 1;
        this.stream[p] = data[i];
      } else if (this.stream[p] !== data[i]) {
        return 'QUIC CRYPTO data differs from data already received at the same offset';
      }
    }
    while (this.contiguous < this.stream.length && this.have[this.contiguous] === 1) this.contiguous++;
    return null;
  }
}

const QUIC_V2 = 0x6b3343cf;
/** Connection IDs remembered per session, of each kind. */
const MAX_SESSION_IDS = 32;

/** A new connection's Initial packet, as `QuicSessionShape.client` reports it: its DCID in hex. */
export interface NewQuicConnection {
  dcid: string;
}

/**
 * What the packets of one UDP session may look like once its first connection's ClientHello was
 * read. From the client, every packet coalesced in a datagram must have the shape of QUIC (RFC 9000
 * §17, RFC 9369 §3.2): fixed bit set; long headers of version 1 or 2, never a Retry, connection IDs of
 * at most 20 bytes, lengths inside the datagram and long enough for header protection; zero bytes
 * after long-header packets are padding; a short-header packet runs to the end of the datagram and
 * has at least 21 bytes. Beyond the shape, what an endpoint's state allows:
 * - an Initial or 0-RTT packet must be addressed to an admitted connection ID (the first
 *   connection's, once read, and those the server chose); one addressed to another is reported as a
 *   new connection, whose own ClientHello must then be read before anything of it passes;
 * - a datagram carrying an Initial packet has at least 1200 bytes (RFC 9000 §14.1); its Initial
 *   packets are then read by the connection's QuicClientHelloReader (`lastHadInitial`);
 * - 0-RTT packets only once a ClientHello offered early data (RFC 9001 §4.6.1);
 * - Handshake and short-header (1-RTT) packets only once the server sent an Initial or Handshake
 *   packet: before that a client has no keys for them.
 * The server's connection IDs come from its Initial and Handshake packets addressed to an ID the
 * client chose for itself, with an ID the client never wrote: a host that merely echoes datagrams
 * can't open the session to short headers. Checking a short-header packet allocates nothing.
 */
export class QuicSessionShape {
  private readonly admitted = new Set<string>();
  private readonly clientSource = new Set<string>();
  private readonly clientAny = new Set<string>();
  private serverSpoke = false;
  private earlyData = false;
  /** Whether the last datagram `client` passed carries an Initial packet (whose ClientHellos must be read). */
  lastHadInitial = false;

  /** Lets Initial and 0-RTT packets addressed to `dcid` (hex) pass. */
  admit(dcid: string): void {
    this.admitted.add(dcid);
  }

  /** Lets 0-RTT packets pass: a ClientHello of the session offered early data. */
  allowEarlyData(): void {
    this.earlyData = true;
  }

  /** Checks a datagram from the client: null when it may pass, else a reason or a new connection. */
  client(buf: Buffer): string | NewQuicConnection | null {
    let offset = 0;
    let found: NewQuicConnection | null = null;
    this.lastHadInitial = false;
    while (offset < buf.length) {
      const first = buf[offset];
      if ((first & 0x80) === 0) {
        if (offset > 0 && isZero(buf, offset)) break;
        if ((first & 0x40) === 0) return 'QUIC fixed bit not set';
        if (buf.length - offset < 21) return 'QUIC short-header packet too short';
        if (!this.serverSpoke) return 'QUIC short-header packet before the server answered';
        break;
      }
      const p = walkLongHeader(buf, offset);
      if (typeof p === 'string') return p;
      if (p.type === 'retry') return 'QUIC Retry packet from the client';
      if (p.type === 'handshake' && !this.serverSpoke) return 'QUIC Handshake packet before the server answered';
      if (p.type === 'initial') {
        if (buf.length < MIN_INITIAL_DATAGRAM) return `QUIC Initial in a datagram of ${buf.length} bytes (clients pad them to ${MIN_INITIAL_DATAGRAM})`;
        this.lastHadInitial = true;
      }
      const dcid = buf.toString('hex', p.dcidAt, p.dcidAt + p.dcidLength);
      const scid = buf.toString('hex', p.scidAt, p.scidAt + p.scidLength);
      if (!remember(this.clientSource, scid) || !remember(this.clientAny, scid) || !remember(this.clientAny, dcid)) return 'too many QUIC connection IDs on one session';
      if (p.type !== 'handshake' && !this.admitted.has(dcid)) found ??= { dcid };
      // A new connection's 0-RTT waits for its ClientHello, and is checked again then.
      else if (p.type === '0rtt' && !this.earlyData) return 'QUIC 0-RTT packet, but no ClientHello offered early data';
      offset = p.end;
    }
    return found;
  }

  /** Learns from a datagram the server sent: the connection IDs it chose, and that it answered. */
  server(buf: Buffer): void {
    let offset = 0;
    while (offset < buf.length && (buf[offset] & 0x80) !== 0) {
      const p = walkLongHeader(buf, offset);
      // A Retry's ID is not admitted: the client's next Initial to it starts over and is read again.
      if (typeof p === 'string' || p.type === 'retry') return;
      if (p.type === 'initial' || p.type === 'handshake') {
        const scid = buf.toString('hex', p.scidAt, p.scidAt + p.scidLength);
        const toClient = this.clientSource.has(buf.toString('hex', p.dcidAt, p.dcidAt + p.dcidLength));
        if (toClient && !this.clientAny.has(scid) && (this.admitted.has(scid) || this.admitted.size < MAX_SESSION_IDS)) {
          this.admitted.add(scid);
          this.serverSpoke = true;
        }
      }
      offset = p.end;
    }
  }
}

/** Adds `id` to a bounded set; false when it is full. */
function remember(set: Set<string>, id: string): boolean {
  if (set.has(id)) return true;
  if (set.size >= MAX_SESSION_IDS) return false;
  set.add(id);
  return true;
}

interface LongHeaderShape {
  type: 'initial' | '0rtt' | 'handshake' | 'retry';
  dcidAt: number;
  dcidLength: number;
  scidAt: number;
  scidLength: number;
  end: number;
}

const LONG_TYPES = ['initial', '0rtt', 'handshake', 'retry'] as const;

/** The shape of a version 1 or 2 long-header packet at `offset`, or why it is malformed. */
function walkLongHeader(buf: Buffer, offset: number): LongHeaderShape | string {
  const first = buf[offset];
  if ((first & 0x40) === 0) return 'QUIC fixed bit not set';
  if (buf.length - offset < 7) return 'truncated QUIC long header';
  const version = buf.readUInt32BE(offset + 1);
  if (version !== QUIC_V1 && version !== QUIC_V2) return `QUIC version 0x${version.toString(16)} is not 1 or 2`;
  const bits = (first & 0x30) >> 4;
  // Version 2 numbers the types Retry, Initial, 0-RTT, Handshake (RFC 9369 §3.2).
  const type = LONG_TYPES[version === QUIC_V1 ? bits : (bits + 3) & 3];
  const dcidLength = buf[offset + 5];
  const dcidAt = offset + 6;
  if (dcidLength > 20 || dcidAt + dcidLength >= buf.length) return 'truncated QUIC long header';
  const scidLength = buf[dcidAt + dcidLength];
  const scidAt = dcidAt + dcidLength + 1;
  if (scidLength > 20 || scidAt + scidLength > buf.length) return 'truncated QUIC long header';
  let p = scidAt + scidLength;
  if (type === 'retry') return { type, dcidAt, dcidLength, scidAt, scidLength, end: buf.length };
  if (type === 'initial') {
    const token = varintAt(buf, p);
    if (token < 0 || varintEnd + token > buf.length) return 'truncated QUIC long header';
    p = varintEnd + token;
  }
  const length = varintAt(buf, p);
  if (length < 0) return 'truncated QUIC long header';
  if (length < 20) return 'QUIC packet too short for header protection';
  if (varintEnd + length > buf.length) return 'QUIC packet length does not fit the datagram';
  return { type, dcidAt, dcidLength, scidAt, scidLength, end: varintEnd + length };
}

/** Where the last `varintAt` ended. */
let varintEnd = 0;

/** The QUIC variable-length integer at `p` (its end in `varintEnd`), or -1 past the end of `buf`. */
function varintAt(buf: Buffer, p: number): number {
  if (p >= buf.length) return -1;
  const length = 1 << (buf[p] >> 6);
  if (p + length > buf.length) return -1;
  let value = buf[p] & 0x3f;
  for (let i = 1; i < length; i++) value = value * 256 + buf[p + i];
  varintEnd = p + length;
  return value;
}

function isZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
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

/** Removes header protection and decrypts an Initial packet's payload with `keys`; null when it fails. */
function decryptInitial(buf: Buffer, p: LongHeader, keys: InitialKeys): Buffer | null {
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
