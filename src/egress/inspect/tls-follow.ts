// Follows a TLS connection's handshake, both ways, for as long as the client's records are in clear
// text, so that every ClientHello on it is checked, not only the first. A server answers a ClientHello
// with a HelloRetryRequest (RFC 8446 §4.1.4) when it wants another key share; the client's second
// ClientHello, still in clear, must then be the same but for the key share, cookie, PSK and padding
// (§4.1.2): here it must name the same server as the first, without ECH. A client may pipeline it
// before the retry request arrives, so every ClientHello in clear is checked whenever it comes.
//
// When the client's records stop being readable depends on the version the server chose:
// - TLS 1.3 (the ServerHello's supported_versions says 0x0304): every later client handshake
//   message is protected, in application_data records. From the first such record on, only record
//   headers are read, without copying: a handshake record in clear, which could only be another
//   ClientHello, is refused (a server must refuse it too, RFC 8446 §5; this does not count on it).
// - TLS 1.2 and older: the client's handshake stays in clear (ClientKeyExchange...) until its
//   ChangeCipherSpec; the records after that are encrypted, handshake ones included (a renegotiation
//   ClientHello can't be read), and the following ends there.
// - Until the server's ServerHello is read (or if it can't be read), application_data records pass
//   (0-RTT early data) and the following goes on; every handshake record in clear must hold only
//   ClientHellos.

import { CONTENT_HANDSHAKE, HANDSHAKE_CLIENT_HELLO, parseHandshakeMessage } from './tls.js';

export type HelloCheck = (hello: { sni: string | null; ech: boolean }) => string | null;

const CHANGE_CIPHER_SPEC = 0x14;
const ALERT = 0x15;
const APPLICATION_DATA = 0x17;
const SERVER_HELLO = 2;
/** TLS 1.2 ciphertext may be 2^14 + 2048 bytes (RFC 5246 §6.2.3). */
const MAX_RECORD = 16384 + 2048;
const MAX_HANDSHAKE = 64 * 1024;
/** The ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3). */
const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

type ServerState = 'unknown' | 'retry' | 'tls13' | 'tls12' | 'lost';

/** Reads TLS records from a stream in any cuts: each whole record goes to `onRecord`. */
class RecordReader {
  private readonly header = Buffer.alloc(5);
  private headerLen = 0;
  private body: Buffer[] = [];
  private left = 0;
  private type = 0;

  constructor(private readonly onRecord: (type: number, fragment: Buffer, raw: Buffer[]) => string | null) {}

  /** Feeds bytes; `done()` between records stops the reading: the rest is returned, not read. */
  push(chunk: Buffer, done: () => boolean): { error: string | null; rest: Buffer | null } {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.headerLen < 5) {
        if (this.headerLen === 0 && done()) return { error: null, rest: chunk.subarray(pos) };
        const n = Math.min(5 - this.headerLen, chunk.length - pos);
        chunk.copy(this.header, this.headerLen, pos, pos + n);
        this.headerLen += n;
        pos += n;
        if (this.headerLen < 5) break;
        if (this.header[1] !== 0x03) return { error: 'not a TLS record version', rest: null };
        this.type = this.header[0];
        this.left = this.header.readUInt16BE(3);
        if (this.left > MAX_RECORD) return { error: `TLS record of ${this.left} bytes`, rest: null };
        this.body = [Buffer.from(this.header)];
      }
      const n = Math.min(this.left, chunk.length - pos);
      this.body.push(chunk.subarray(pos, pos + n));
      pos += n;
      this.left -= n;
      if (this.left === 0) {
        const raw = this.body;
        this.body = [];
        this.headerLen = 0;
        const error = this.onRecord(this.type, Buffer.concat(raw.slice(1)), raw);
        if (error) return { error, rest: null };
      }
    }
    return { error: null, rest: null };
  }
}

/** Handshake messages from consecutive fragments; `partial` while one is cut. */
class HandshakeMessages {
  private buf: Buffer = Buffer.alloc(0);

  get partial(): boolean {
    return this.buf.length > 0;
  }

  /** Appends a fragment; the whole messages it completes, or an error. */
  push(fragment: Buffer): Buffer[] | string {
    this.buf = this.buf.length ? Buffer.concat([this.buf, fragment]) : fragment;
    const messages: Buffer[] = [];
    while (this.buf.length >= 4) {
      const length = 4 + this.buf.readUIntBE(1, 3);
      if (length > MAX_HANDSHAKE) return `TLS handshake message of ${length} bytes`;
      if (this.buf.length < length) break;
      messages.push(this.buf.subarray(0, length));
      this.buf = this.buf.subarray(length);
    }
    if (this.buf.length > MAX_HANDSHAKE) return 'TLS handshake message too long';
    return messages;
  }
}

/**
 * Follows one TLS connection: `push` the client's bytes and relay what `drain` gives (a record is held
 * until it is whole, and a handshake record until the ClientHellos it completes passed `check`);
 * `pushResponse` the server's bytes (its ServerHello tells the version and whether it asked for a
 * retry). `done` once a TLS 1.2 client's records are encrypted: later bytes need not be pushed.
 */
export class TlsHandshakeFollower {
  private readonly clientRecords = new RecordReader((type, fragment, raw) => this.onClientRecord(type, fragment, raw));
  private readonly serverRecords = new RecordReader((type, fragment) => this.onServerRecord(type, fragment));
  private readonly clientMessages = new HandshakeMessages();
  private readonly serverMessages = new HandshakeMessages();
  private serverState: ServerState = 'unknown';
  private protectedNext = false;
  private passthrough = false;
  /** TLS 1.3 records after the client's first protected one: only their headers are read. */
  private skimming = false;
  private skimHeaderLen = 0;
  private skimLength = 0;
  private skimLeft = 0;
  private failed: string | null = null;
  private held: Buffer[] = [];
  private out: Buffer[] = [];
  private firstSni: string | null | undefined;
  /** ClientHellos read so far (2 after a retry). */
  hellos = 0;

  /** `check` judges the first ClientHello; every later one must name the same server, without ECH. */
  constructor(private readonly check: HelloCheck = () => null) {}

  get done(): boolean {
    return this.passthrough;
  }

  /** What the server's ServerHello said so far. */
  get server(): ServerState {
    return this.serverState;
  }

  drain(): Buffer[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  push(chunk: Buffer): string | null {
    if (this.failed) return this.failed;
    if (this.passthrough) {
      this.out.push(chunk);
      return null;
    }
    if (this.skimming) return this.skim(chunk);
    const { error, rest } = this.clientRecords.push(chunk, () => this.protectedNext);
    if (error) return this.fail(error);
    if (!rest) return null;
    if (this.serverState === 'tls12') {
      this.passthrough = true;
      this.out.push(rest);
      return null;
    }
    this.skimming = true;
    return this.skim(rest);
  }

  /**
   * TLS 1.3 once protected: records pass as they come (no copy), but a handshake record in clear, which
   * could only be another ClientHello, fails at its first byte: a server must refuse one (RFC 8446 §5),
   * and this does not count on it.
   */
  private skim(chunk: Buffer): string | null {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.skimLeft > 0) {
        const n = Math.min(this.skimLeft, chunk.length - pos);
        pos += n;
        this.skimLeft -= n;
        continue;
      }
      const b = chunk[pos++];
      switch (this.skimHeaderLen++) {
        case 0:
          if (b === CONTENT_HANDSHAKE) return this.fail('a TLS handshake record in clear after the TLS 1.3 keys');
          break;
        case 1:
          if (b !== 0x03) return this.fail('not a TLS record version');
          break;
        case 3:
          this.skimLength = b << 8;
          break;
        case 4:
          this.skimLeft = this.skimLength | b;
          if (this.skimLeft > MAX_RECORD) return this.fail(`TLS record of ${this.skimLeft} bytes`);
          this.skimHeaderLen = 0;
          break;
      }
    }
    this.out.push(chunk);
    return null;
  }

  pushResponse(chunk: Buffer): string | null {
    if (this.failed || this.passthrough || this.serverState === 'lost' || this.serverState === 'tls12' || this.serverState === 'tls13') return null;
    const { error } = this.serverRecords.push(chunk, () => this.serverState === 'tls12' || this.serverState === 'tls13');
    if (error) this.serverState = 'lost';
    return null;
  }

  /** The server's stream can't be followed (it spoke first): the client's records stay read as in clear. */
  responsesUnknown(): void {
    this.serverState = 'lost';
  }

  private onClientRecord(type: number, fragment: Buffer, raw: Buffer[]): string | null {
    if (type !== CONTENT_HANDSHAKE && this.clientMessages.partial) return 'a TLS record interleaved with a cut handshake message';
    switch (type) {
      case CONTENT_HANDSHAKE: {
        if (this.serverState === 'tls13') return 'a TLS handshake record in clear after the TLS 1.3 ServerHello';
        const messages = this.clientMessages.push(fragment);
        if (typeof messages === 'string') return messages;
        for (const m of messages) {
          const error = this.onClientMessage(m);
          if (error) return error;
        }
        this.held.push(...raw);
        if (!this.clientMessages.partial) this.release();
        return null;
      }
      case CHANGE_CIPHER_SPEC:
        // In TLS 1.2 what follows is encrypted; in TLS 1.3 it is a compatibility no-op (RFC 8446 §D.4).
        if (this.serverState === 'tls12') this.protectedNext = true;
        break;
      case APPLICATION_DATA:
        if (this.serverState === 'tls13') this.protectedNext = true;
        break;
      case ALERT:
        break;
      default:
        return `TLS record type ${type} from the client`;
    }
    this.held.push(...raw);
    this.release();
    return null;
  }

  private onClientMessage(message: Buffer): string | null {
    if (message[0] !== HANDSHAKE_CLIENT_HELLO) {
      return this.serverState === 'tls12' ? null : `TLS handshake message ${message[0]} in clear before the server chose TLS 1.2`;
    }
    this.hellos++;
    const hello = parseHandshakeMessage(message);
    if (hello.status !== 'ok') return `a later ClientHello: ${hello.status === 'invalid' ? hello.reason : 'incomplete'}`;
    if (this.firstSni === undefined) {
      this.firstSni = hello.sni;
      return this.check(hello);
    }
    if (hello.ech) return 'a later ClientHello with an encrypted ClientHello (ECH)';
    if (hello.sni !== this.firstSni) return `a later ClientHello names ${hello.sni ?? 'no server'}, the first named ${this.firstSni ?? 'none'}`;
    return null;
  }

  private onServerRecord(type: number, fragment: Buffer): string | null {
    if (type === CHANGE_CIPHER_SPEC) return null;
    if (type !== CONTENT_HANDSHAKE) return 'the server sent a record other than its ServerHello first';
    const messages = this.serverMessages.push(fragment);
    if (typeof messages === 'string') return messages;
    for (const m of messages) {
      if (this.serverState === 'tls12' || this.serverState === 'tls13') return null;
      const state = serverHelloVersion(m);
      if (state === null) return 'the server did not answer with a ServerHello';
      this.serverState = state;
    }
    return null;
  }

  private release(): void {
    this.out.push(...this.held);
    this.held = [];
  }

  private fail(reason: string): string {
    this.failed = reason;
    this.held = [];
    this.out = [];
    return reason;
  }
}

/** What a ServerHello says: a retry request, TLS 1.3, or an older version; null if it isn't one. */
function serverHelloVersion(message: Buffer): 'retry' | 'tls13' | 'tls12' | null {
  if (message[0] !== SERVER_HELLO || message.length < 4 + 2 + 32 + 1) return null;
  const body = message.subarray(4);
  if (body.subarray(2, 34).equals(HRR_RANDOM)) return 'retry';
  let p = 34;
  p += 1 + body[p]; // legacy_session_id_echo
  p += 2 + 1; // cipher_suite, legacy_compression_method
  if (p + 2 > body.length) return p === body.length ? 'tls12' : null;
  const end = p + 2 + body.readUInt16BE(p);
  if (end > body.length) return null;
  for (p += 2; p + 4 <= end; ) {
    const type = body.readUInt16BE(p);
    const length = body.readUInt16BE(p + 2);
    if (type === 0x002b && length === 2 && p + 6 <= end) return body.readUInt16BE(p + 4) === 0x0304 ? 'tls13' : 'tls12';
    p += 4 + length;
  }
  return 'tls12';
}
