// The egress log: pino, JSON lines or pino-pretty, to stderr or a file. On a terminal the pretty form is
// one short line per event ("tapbox: denied tcp evil.example:443 (198.51.100.7): not in allowlist");
// the structured fields are in the JSON form. Messages carry names the sandbox or a DNS server chose
// (a CNAME target, a TLS SNI): the pretty form escapes their control characters (JSON escapes them itself).
import { createRequire } from 'node:module';
import pino from 'pino';
import type Pretty from 'pino-pretty';
import { printable } from '../dns/names.js';
import { TapboxError } from '../../errors.js';

export interface LoggerOptions {
  logLevel: string;
  logFormat: 'json' | 'pretty';
  logFile?: string;
}

export function createLogger(o: LoggerOptions): pino.Logger {
  if (o.logLevel !== 'silent' && !(o.logLevel in pino.levels.values)) {
    throw new TapboxError('EUSAGE', `unknown log level "${o.logLevel}"; use one of ${Object.keys(pino.levels.values).join(', ')} or silent.`);
  }
  const options = { level: o.logLevel, base: undefined };
  const messageFormat = (log: Record<string, unknown>, key: string) => `tapbox: ${printable(String(log[key] ?? ''))}`;
  if (o.logFormat === 'json') return pino(options, pino.destination({ dest: o.logFile ?? 2, sync: true }));
  // Loaded only for the pretty form (start-up time).
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof Pretty;
  const stream = o.logFile
    ? pretty({ destination: o.logFile, sync: true, colorize: false, hideObject: true, ignore: 'pid,hostname,name', translateTime: 'SYS:standard', messageFormat })
    : pretty({ destination: 2, sync: true, hideObject: true, ignore: 'pid,hostname,name,time,level', messageFormat });
  return pino(options, stream);
}
