// The egress log: pino, JSON lines or pino-pretty, to stderr or a file. On a terminal the pretty form is
// one short line per event ("tapbox: denied tcp evil.example:443 (198.51.100.7): not in allowlist");
// the structured fields are in the JSON form. Messages carry names the sandbox or a DNS server chose
// (a CNAME target, a TLS SNI): the pretty form escapes their control characters (JSON escapes them itself).
//
// pino takes longer to load than the rest of the egress side (start-up, docs/architecture.md), and most
// runs log nothing at the default level: on stderr it is loaded with the first line written. A log
// file is opened at the start, so that a file that can't be written stops the run before it runs.
import { createRequire } from 'node:module';
import type pino from 'pino';
import type Pretty from 'pino-pretty';
import { printable } from '../dns/names.js';
import { TapboxError } from '../../errors.js';

export interface LoggerOptions {
  logLevel: string;
  logFormat: 'json' | 'pretty';
  logFile?: string;
}

/** What the egress side writes to the log (a pino logger is one). */
export interface AuditLog {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** pino's levels (pino.levels.values; test/unit/audit.test.ts checks that they are the same). */
export const LOG_LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

export function createLogger(o: LoggerOptions): AuditLog {
  if (o.logLevel !== 'silent' && !Object.hasOwn(LOG_LEVELS, o.logLevel)) {
    throw new TapboxError('EUSAGE', `unknown log level "${o.logLevel}"; use one of ${Object.keys(LOG_LEVELS).join(', ')} or silent.`);
  }
  if (o.logFile !== undefined) return pinoLogger(o);
  const threshold = o.logLevel === 'silent' ? Infinity : LOG_LEVELS[o.logLevel]!;
  let logger: pino.Logger | undefined;
  const write = (level: keyof AuditLog) => (fields: object, message: string) => {
    if (LOG_LEVELS[level]! >= threshold) (logger ??= pinoLogger(o))[level](fields, message);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn') };
}

function pinoLogger(o: LoggerOptions): pino.Logger {
  const require = createRequire(import.meta.url);
  const create = require('pino') as typeof pino;
  const options = { level: o.logLevel, base: undefined };
  const messageFormat = (log: Record<string, unknown>, key: string) => `tapbox: ${printable(String(log[key] ?? ''))}`;
  if (o.logFormat === 'json') return create(options, create.destination({ dest: o.logFile ?? 2, sync: true }));
  const pretty = require('pino-pretty') as typeof Pretty;
  const stream = o.logFile
    ? pretty({ destination: o.logFile, sync: true, colorize: false, hideObject: true, ignore: 'pid,hostname,name', translateTime: 'SYS:standard', messageFormat })
    : pretty({ destination: 2, sync: true, hideObject: true, ignore: 'pid,hostname,name,time,level', messageFormat });
  return create(options, stream);
}
