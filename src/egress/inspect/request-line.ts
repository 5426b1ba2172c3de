// Whether the first line of a stream is one a common HTTP server could take for a request, read as
// leniently as the most lenient of them. Python's http.server splits the line on any Unicode
// whitespace (VT, FF, 0x1c-0x1f, 0x85, 0xa0 too) after skipping leading whitespace, takes a version-less
// "GET /path" (HTTP/0.9) and a NUL inside the target; nginx and llhttp skip leading CR and LF; nginx
// routes HTTP/0.9 requests with an absolute-form target by its host. So a line is "other" only when no
// such reading makes it a request, and in doubt it is a request (which the strict framer then frames
// or refuses).

export type LineVerdict = 'request' | 'other' | null;

/** The bytes Python's str.split() separates words at, on a line decoded as ISO-8859-1; nginx and llhttp end lines at LF. */
const WHITESPACE = new Uint8Array(256);
for (const c of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0]) WHITESPACE[c] = 1;
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TOKEN[c.charCodeAt(0)] = 1;

/** Methods some server routes by name; with one of them, what follows is read as a request whatever it is. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

const MAX_METHOD = 32;

/**
 * Reads a stream's first bytes, one at a time, until it can tell. The line is a request when, after
 * any leading whitespace, a method word is followed by whitespace and either the method is a known
 * one, or the rest of the line (up to LF) holds "HTTP/" or "://". It is another protocol when the
 * first non-whitespace byte can't start a method, the method word ends in a byte that is neither a
 * token byte nor whitespace, a NUL follows a method no server knows, or the line ends without those.
 */
export class RequestLineSniffer {
  private phase: 'lead' | 'method' | 'rest' = 'lead';
  private method = '';
  private rest = '';

  /** Feeds the next byte; the verdict once it is known (later bytes are not needed then). */
  push(b: number): LineVerdict {
    switch (this.phase) {
      case 'lead':
        if (WHITESPACE[b]) return null;
        if (!TOKEN[b]) return 'other';
        this.phase = 'method';
        this.method = String.fromCharCode(b);
        return null;
      case 'method':
        if (TOKEN[b]) {
          if (this.method.length < MAX_METHOD) this.method += String.fromCharCode(b);
          return null;
        }
        if (!WHITESPACE[b]) return 'other';
        if (METHODS.has(this.method.toUpperCase())) return 'request';
        this.phase = 'rest';
        return b === 0x0a ? 'other' : null;
      case 'rest':
        if (b === 0x0a) return 'other';
        if (b === 0) return 'other'; // the method is not a known one, and only Python takes a NUL
        // Only the last few bytes matter to find "HTTP/" or "://" as they complete.
        this.rest = (this.rest + String.fromCharCode(b)).slice(-5);
        return /HTTP\/$/i.test(this.rest) || this.rest.endsWith('://') ? 'request' : null;
    }
  }
}
