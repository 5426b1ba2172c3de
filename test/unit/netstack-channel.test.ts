import { describe, expect, it } from 'vitest';
import { ChannelEndpoint, type ChannelOptions, type NetworkDispatcher } from '../../netstack/index.js';

/** A dispatcher that records the first byte of every delivered frame and counts batches. */
function recorder() {
  const seen: number[] = [];
  let batches = 0;
  const dispatcher: NetworkDispatcher = {
    deliverFrame: (frame) => void seen.push(frame[0]!),
    batchDone: () => void batches++,
  };
  return { dispatcher, seen, batches: () => batches };
}

function run(options: ChannelOptions, count = 20) {
  const link = new ChannelEndpoint(options);
  const r = recorder();
  link.attach(r.dispatcher);
  for (let i = 0; i < count; i++) link.inject(Buffer.from([i, 0, 0, 0]));
  link.release();
  return { link, ...r };
}

describe('ChannelEndpoint', () => {
  it('delivers injected frames in order, one batch each, and queues written frames', () => {
    const { link, seen, batches } = run({}, 3);
    expect(seen).toEqual([0, 1, 2]);
    expect(batches()).toBeGreaterThanOrEqual(3);
    link.writeFrame(Buffer.from([9]));
    link.writeFrame(Buffer.from([8]));
    expect(link.read()).toEqual(Buffer.from([9]));
    expect(link.drain()).toEqual([Buffer.from([8])]);
    expect(link.read()).toBeUndefined();
  });

  it('copies what it is given: the caller may reuse its buffer', () => {
    const link = new ChannelEndpoint();
    const buf = Buffer.from([1, 2]);
    link.writeFrame(buf);
    buf[0] = 7;
    expect(link.read()).toEqual(Buffer.from([1, 2]));
  });

  it('drops every frame at a drop share of 1', () => {
    const { seen, link } = run({ inbound: { drop: 1 } });
    expect(seen).toEqual([]);
    expect(link.faultCounts.inbound.dropped).toBe(20);
  });

  it('duplicates frames', () => {
    const { seen } = run({ inbound: { duplicate: 1 } }, 3);
    expect(seen).toEqual([0, 0, 1, 1, 2, 2]);
  });

  it('reorders frames without losing any', () => {
    const { seen, link } = run({ inbound: { reorder: 0.5 } });
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(seen).not.toEqual([...seen].sort((a, b) => a - b));
    expect(link.faultCounts.inbound.reordered).toBeGreaterThan(0);
  });

  it('corrupts one bit of the chosen frames', () => {
    const link = new ChannelEndpoint({ outbound: { corrupt: 1 } });
    const frame = Buffer.alloc(64);
    link.writeFrame(frame);
    const out = link.read()!;
    const flipped = [...out].reduce((bits, byte) => bits + byte.toString(2).replaceAll('0', '').length, 0);
    expect(flipped).toBe(1);
  });

  it('the same seed gives the same fault pattern, another seed another', () => {
    const a = run({ seed: 7, inbound: { drop: 0.3, reorder: 0.2 } }).seen;
    const b = run({ seed: 7, inbound: { drop: 0.3, reorder: 0.2 } }).seen;
    const c = run({ seed: 8, inbound: { drop: 0.3, reorder: 0.2 } }).seen;
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('applies faults per direction', () => {
    const { seen, link } = run({ outbound: { drop: 1 } }, 2);
    expect(seen).toEqual([0, 1]);
    link.writeFrame(Buffer.from([1]));
    expect(link.drain()).toEqual([]);
  });
});
