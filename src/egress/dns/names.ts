// Names the sandbox chooses (DNS questions, and so pins, the summary, the learned allowlist) are
// untrusted text. The DNS proxy serves only host names; whatever is printed is escaped first.

const LABEL = /^[a-z0-9_-]{1,63}$/;

/**
 * Is `name` (normalized: lower case, no trailing dot) a host name: labels of letters, digits, hyphen
 * and underscore, 1-63 characters each, 253 in all? Anything else is refused by the DNS proxy before
 * the policy or the upstream sees it.
 */
export function isHostName(name: string): boolean {
  return name.length >= 1 && name.length <= 253 && name.split('.').every((l) => LABEL.test(l));
}

// C0 and C1 controls, DEL, the backslash (so that an escape is never ambiguous), and the invisible
// characters that reorder or break lines on a terminal (bidi controls, line/paragraph separators).
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\\\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/** `text` safe to print on a terminal or in a comment line: controls become \xHH (others \u{H}). */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
