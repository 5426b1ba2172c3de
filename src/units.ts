// Sizes as users write them (512M, 2G) and as tapbox prints them (1.5 MiB): shared by the options, the
// egress summary, --progress and the image store. Imports nothing of tapbox but its errors.
import { TapboxError } from './errors.js';

/** A byte count, or a string such as "512M", "2G", "64k". */
export type Size = number | string;

/** "512M" → 536870912. Suffixes K, M, G, T (powers of 1024), optional "iB"/"B". */
export function parseSize(value: Size, flag: string): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value > 0) return value;
    throw new TapboxError('EUSAGE', `${flag} ${value} is not a size; give a whole number of bytes or a size like 512M or 2G.`);
  }
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!m) throw new TapboxError('EUSAGE', `${flag} "${value}" is not a size; give bytes or a size like 512M or 2G.`);
  const bytes = Math.floor(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new TapboxError('EUSAGE', `${flag} "${value}" is not a size; give bytes or a size like 512M or 2G.`);
  return bytes;
}

/** 1536 → "1.5 KiB": bytes below 1 KiB as they are, larger counts in binary units with one decimal. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
