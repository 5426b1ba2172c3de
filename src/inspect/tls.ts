// The server name a TLS ClientHello asks for (RFC 8446 §4.1.2, SNI: RFC 6066 §3), read from the first
// bytes of a TCP stream (TLS records) or from a QUIC Initial's CRYPTO data (bare handshake messages).
// Only what the policy needs is parsed: the SNI, and whether the hello carries an
// encrypted_client_hello extension (0xfe0d), whose inner, real name we cannot see.

export type HelloResult =
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string }
  | { status: 'ok'; sni: string | null; ech: boolean };

const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ENCRYPTED_CLIENT_HELLO = 0xfe0d;
const MAX_RECORD = 16384 + 256;

/** Parses a ClientHello from the start of a TLS stream; it may span several records. */
export function parseTlsClientHello(stream: Buffer): HelloResult {
  const fragments: Buffer[] = [];
  let offset = 0;
  for (;;) {
    if (stream.length < offset + 5) return { status: 'incomplete' };
    if (stream[offset] !== CONTENT_HANDSHAKE) return { status: 'invalid', reason: 'not a TLS handshake record' };
    if (stream[offset + 1] !== 0x03) return { status: 'invalid', reason: 'not a TLS record version' };
    const length = stream.readUInt16BE(offset + 3);
    if (length === 0 || length > MAX_RECORD) return { status: 'invalid', reason: `bad TLS record length ${length}` };
    if (stream.length < offset + 5 + length) return { status: 'incomplete' };
    fragments.push(stream.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
    const handshake = Buffer.concat(fragments);
    const result = parseHandshakeMessage(handshake);
    if (result.status !== 'incomplete') return result;
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
