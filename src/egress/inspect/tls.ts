// The server name a TLS ClientHello asks for (RFC 8446 §4.1.2, SNI: RFC 6066 §3), read from the first
// bytes of a TCP stream (TLS records) or from a QUIC Initial's CRYPTO data (bare handshake messages).
// Only what the policy needs is parsed: the SNI, and whether the hello carries an
// encrypted_client_hello extension (0xfe0d), whose inner, real name we cannot see.

export type HelloResult =
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string }
  | { status: 'ok'; sni: string | null; ech: boolean };

/** Record and handshake types (RFC 8446 §5.1, §4), shared with ./tls-follow.ts. */
export const CONTENT_HANDSHAKE = 0x16;
export const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ENCRYPTED_CLIENT_HELLO = 0xfe0d;
const EXT_EARLY_DATA = 0x002a;
const MAX_RECORD = 16384 + 256;

/** Parses a ClientHello from the start of a TLS stream; it may span several records. */
export function parseTlsClientHello(stream: Buffer): HelloResult {
  return new TlsClientHelloReader().push(stream);
}

/**
 * Reads a ClientHello from a TLS stream as its bytes arrive, in any cuts: record payloads are appended
 * to one handshake buffer, each byte copied once, and the hello is parsed once it is whole. So even a
 * hello cut into 1-byte records costs time linear in its size.
 */
export class TlsClientHelloReader {
  /** Bytes handled so far, counted once per look (for tests: the work stays linear in the input). */
  scanned = 0;
  private readonly header = Buffer.alloc(5);
  private headerLen = 0;
  private recordLeft = 0;
  private handshake = Buffer.alloc(0);
  private handshakeLen = 0;
  private result: HelloResult = { status: 'incomplete' };

  push(chunk: Buffer): HelloResult {
    let pos = 0;
    while (this.result.status === 'incomplete' && pos < chunk.length) {
      if (this.recordLeft === 0) {
        const n = Math.min(5 - this.headerLen, chunk.length - pos);
        chunk.copy(this.header, this.headerLen, pos, pos + n);
        this.headerLen += n;
        this.scanned += n;
        pos += n;
        if (this.headerLen < 5) break;
        this.headerLen = 0;
        const header = this.header;
        if (header[0] !== CONTENT_HANDSHAKE) this.result = { status: 'invalid', reason: 'not a TLS handshake record' };
        else if (header[1] !== 0x03) this.result = { status: 'invalid', reason: 'not a TLS record version' };
        else {
          const length = header.readUInt16BE(3);
          if (length === 0 || length > MAX_RECORD) this.result = { status: 'invalid', reason: `bad TLS record length ${length}` };
          this.recordLeft = length;
        }
      } else {
        const n = Math.min(this.recordLeft, chunk.length - pos);
        this.append(chunk.subarray(pos, pos + n));
        pos += n;
        this.recordLeft -= n;
        if (this.recordLeft === 0) this.result = this.parseIfWhole();
      }
    }
    return this.result;
  }

  private append(bytes: Buffer): void {
    if (this.handshakeLen + bytes.length > this.handshake.length) {
      const grown = Buffer.alloc(Math.max(2 * this.handshake.length, this.handshakeLen + bytes.length, 1024));
      this.handshake.copy(grown, 0, 0, this.handshakeLen);
      this.scanned += this.handshakeLen;
      this.handshake = grown;
    }
    bytes.copy(this.handshake, this.handshakeLen);
    this.handshakeLen += bytes.length;
    this.scanned += bytes.length;
  }

  /** After a whole record, as a hello may end with any record: parsed once all of it is there. */
  private parseIfWhole(): HelloResult {
    const msg = this.handshake.subarray(0, this.handshakeLen);
    if (msg.length < 4) return { status: 'incomplete' };
    if (msg[0] !== HANDSHAKE_CLIENT_HELLO) return { status: 'invalid', reason: 'first handshake message is not a ClientHello' };
    if (msg.length < 4 + msg.readUIntBE(1, 3)) return { status: 'incomplete' };
    this.scanned += msg.length;
    return parseHandshakeMessage(msg);
  }
}

/** Parses a ClientHello handshake message (type, 3-byte length, body), as QUIC carries it. */
export function parseHandshakeMessage(msg: Buffer): HelloResult {
  if (msg.length < 4) return { status: 'incomplete' };
  if (msg[0] !== HANDSHAKE_CLIENT_HELLO) return { status: 'invalid', reason: 'first handshake message is not a ClientHello' };
  const length = msg.readUIntBE(1, 3);
  if (msg.length < 4 + length) return { status: 'incomplete' };
  return parseClientHelloBody(msg.subarray(4, 4 + length));
}

function parseClientHelloBody(body: Buffer): HelloResult {
  const r = new Reader(body);
  r.skip(2 + 32); // legacy_version, random
  r.skip(r.u8()); // legacy_session_id
  r.skip(r.u16()); // cipher_suites
  r.skip(r.u8()); // legacy_compression_methods
  if (r.failed) return { status: 'invalid', reason: 'truncated ClientHello' };
  if (r.remaining === 0) return { status: 'ok', sni: null, ech: false }; // no extensions at all
  const extensions = new Reader(r.bytes(r.u16()));
  if (r.failed) return { status: 'invalid', reason: 'truncated ClientHello extensions' };
  let sni: string | null = null;
  let ech = false;
  while (extensions.remaining > 0) {
    const type = extensions.u16();
    const data = extensions.bytes(extensions.u16());
    if (extensions.failed) return { status: 'invalid', reason: 'truncated extension' };
    if (type === EXT_ENCRYPTED_CLIENT_HELLO) ech = true;
    if (type === EXT_SERVER_NAME) {
      if (sni !== null) return { status: 'invalid', reason: 'two server_name extensions' };
      const parsed = parseServerName(data);
      if (parsed === null) return { status: 'invalid', reason: 'malformed server_name extension' };
      sni = parsed;
    }
  }
  return { status: 'ok', sni, ech };
}

/** Whether a whole ClientHello handshake message offers early data (0-RTT: RFC 8446 §4.2.10, RFC 9001 §4.6.1). */
export function offersEarlyData(msg: Buffer): boolean {
  const r = new Reader(msg.subarray(4));
  r.skip(2 + 32);
  r.skip(r.u8());
  r.skip(r.u16());
  r.skip(r.u8());
  const extensions = new Reader(r.bytes(r.u16()));
  while (!r.failed && !extensions.failed && extensions.remaining > 0) {
    const type = extensions.u16();
    extensions.skip(extensions.u16());
    if (type === EXT_EARLY_DATA && !extensions.failed) return true;
  }
  return false;
}

/** The host_name entry of a server_name extension; null when malformed. */
function parseServerName(data: Buffer): string | null {
  const r = new Reader(data);
  const list = new Reader(r.bytes(r.u16()));
  let name: string | null = null;
  while (!r.failed && list.remaining > 0) {
    const type = list.u8();
    const value = list.bytes(list.u16());
    if (list.failed) return null;
    if (type !== 0) continue;
    if (name !== null) return null; // one host_name only (RFC 6066)
    if (value.length === 0 || !/^[\x21-\x7e]+$/.test(value.toString('latin1'))) return null;
    name = value.toString('latin1').toLowerCase();
  }
  return r.failed ? null : name;
}

/** A bounds-checked cursor: reads past the end set `failed` and return zeros/empty buffers. */
class Reader {
  failed = false;
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  u8(): number {
    return this.take(1)?.[0] ?? 0;
  }

  u16(): number {
    return this.take(2)?.readUInt16BE(0) ?? 0;
  }

  bytes(n: number): Buffer {
    return this.take(n) ?? Buffer.alloc(0);
  }

  skip(n: number): void {
    this.take(n);
  }

  private take(n: number): Buffer | null {
    if (this.failed || n > this.remaining) {
      this.failed = true;
      return null;
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}
