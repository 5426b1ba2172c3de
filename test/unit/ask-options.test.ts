import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../../src/options/options.js';

describe('ask and attribution options', () => {
  it('refuses contradictions and out-of-range values with one sentence naming the fix', () => {
    const onRequest = () => 'deny' as const;
    expect(() => resolveOptions({ askSave: 'x.allow' })).toThrow(/^--ask-save only works in ask mode; add --ask\.$/);
    expect(() => resolveOptions({ onRequest, audit: true })).toThrow(/^--ask and --audit contradict each other .*; give one\.$/);
    expect(() => resolveOptions({ onRequest, learn: 'x.allow' })).toThrow(/^--ask and --learn contradict/);
    for (const t of [0, 26, 1.5]) expect(() => resolveOptions({ onRequest, askTimeout: t })).toThrow(/^--ask-timeout .* is out of range; give a whole number of seconds from 1 to 25/);
    expect(() => resolveOptions({ attribution: 'some' as never })).toThrow(/^attribution "some" is not a mode; give all, denied or off\.$/);
  });

  it('turns on the network and full attribution in ask mode; attributes denials only when enforcing', () => {
    expect(resolveOptions({ onRequest: () => 'deny' })).toMatchObject({ net: 'tap', ask: true, askTimeout: 20, attribution: 'all' });
    expect(resolveOptions({ allow: ['x.example'] })).toMatchObject({ ask: false, attribution: 'denied' });
    expect(resolveOptions({ audit: true })).toMatchObject({ attribution: 'all' });
    expect(resolveOptions({ audit: true, attribution: false })).toMatchObject({ attribution: 'off' });
    expect(resolveOptions({ allow: ['x.example'], attribution: true })).toMatchObject({ attribution: 'all' });
  });
});
