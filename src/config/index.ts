// Config files: `tapbox --config FILE` (repeatable) and `tapbox config --print | --schema`.
//
// A config file is JSON whose keys are tapbox's options (./keys.ts) or zbox's (./zbox.ts). It is read
// only when named: never picked up from the working directory, so a cloned repository can't widen
// its own sandbox. Files apply in the order given, a later one replacing a key an earlier one set;
// a flag given on the command line wins over every file. Each file is checked against the schema
// (ajv) and each value by the flag's own parser before anything runs: an error names the file, the
// key and what is wrong, and nothing runs. A value only checked when the run's options are resolved
// (--memory's size, --cpuset's list, --rootfs's path) is blamed on its file and key there (blameConfig).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as AjvModule from 'ajv';
import type { ErrorObject } from 'ajv';
import type { Command, Option } from 'commander';
import { TapboxError } from '../errors.js';
import { configKeys, configSchema } from './keys.js';
import { fromZbox, type ZboxConfig } from './zbox.js';

const collect = (value: string, previous: string[]) => [...previous, value];

/** Adds --config FILE to `program` (a sandbox run's options). */
export function addConfigOption(program: Command): Command {
  return program.option('--config <file>', 'read settings from this JSON file (repeatable; flags given here win; `tapbox config --schema` shows the keys)', collect, []);
}

function problem(file: string, key: string, what: string): string {
  return `${file}: ${key}: ${what}`;
}

function describe(file: string, error: ErrorObject): string {
  const key = error.instancePath.split('/').filter(Boolean).join('.') || '(top)';
  if (error.keyword === 'additionalProperties') {
    return problem(file, String(error.params.additionalProperty), 'is not a tapbox setting; `tapbox config --schema` lists them');
  }
  if (error.keyword === 'enum') return problem(file, key, `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`);
  return problem(file, key, error.message ?? 'is wrong');
}

function readConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new TapboxError('EUSAGE', `--config ${file}: the file can't be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give the path of a JSON config file.`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new TapboxError('EUSAGE', `${file}: is not JSON (${(e as Error).message}); a config file is one JSON object.`);
  }
}

/** What config files gave a run besides option values: zbox's `binary` and `name`. */
export interface FromConfig {
  command?: string[];
  /** zbox's `name`: the hostname, and the name of a box started with `run -d` without --name. */
  name?: string;
}

/** Per program: which file and key set each option value that came from a config file. */
const origins = new WeakMap<Command, Map<string, string>>();

/**
 * Applies the files of `program`'s --config to its option values (a flag given on the command line
 * wins), checking every key and value first. ajv is loaded here, only when a file is named: it takes
 * ~25 ms to load (start-up, docs/architecture.md).
 */
export async function applyConfigFiles(program: Command): Promise<FromConfig> {
  const files = program.getOptionValue('config') as string[];
  if (files.length === 0) return {};
  const keys = configKeys(program);
  const { Ajv } = createRequire(import.meta.url)('ajv') as typeof AjvModule;
  const validate = new Ajv({ allErrors: true, strict: false }).compile(configSchema(program));
  const origin = new Map<string, string>();
  origins.set(program, origin);
  const from: FromConfig = {};
  for (const file of files) {
    const config = readConfig(file);
    if (!validate(config)) throw new TapboxError('EUSAGE', (validate.errors ?? []).map((e) => describe(file, e)).join('\n'));
    const zbox = fromZbox(config as ZboxConfig);
    const fromZboxKeys = new Set([...zbox.settings.map(([, , from]) => from), 'binary']);
    const settings: [string, unknown, string][] = Object.entries(config).filter(([key]) => key !== '$schema' && !fromZboxKeys.has(key)).map(([k, v]) => [k, v, k]);
    for (const [key, value, from] of zbox.settings) {
      if (key in config) throw new TapboxError('EUSAGE', problem(file, from, `sets ${key}, and so does the key ${key}; keep one.`));
      settings.push([key, value, from]);
    }
    from.command = zbox.command ?? from.command;
    from.name = (config as ZboxConfig).name ?? from.name;
    for (const [key, value, fromKey] of settings) {
      const entry = keys.get(key)!;
      if (program.getOptionValueSource(entry.attribute) === 'cli') continue;
      program.setOptionValueWithSource(entry.attribute, parseValue(file, fromKey, entry.options, entry.list, value), 'config');
      origin.set(entry.attribute, `${file}: ${fromKey}`);
    }
  }
  return from;
}

/**
 * `error`, blamed on the config file and key behind it when it is about an option whose value a file
 * gave (the first such --flag it names), as `FILE: key: ...`; otherwise `error` itself.
 */
export function blameConfig(program: Command, error: unknown): unknown {
  const origin = origins.get(program);
  if (!origin || !(error instanceof TapboxError) || error.code !== 'EUSAGE') return error;
  for (const [flag] of error.message.matchAll(/--[a-z][a-z0-9-]*/g)) {
    const option = program.options.find((o) => o.long === flag);
    const attribute = option?.attributeName();
    if (attribute && program.getOptionValueSource(attribute) === 'config' && origin.has(attribute)) {
      return new TapboxError(error.code, `${origin.get(attribute)}: ${error.message}`);
    }
  }
  return error;
}

/** A config value as the flag would have it after parsing, through the flag's own parser. */
function parseValue(file: string, key: string, options: Option[], list: boolean, value: unknown): unknown {
  if (typeof value === 'boolean') return value;
  const option = options.find((o) => !o.negate)!;
  const parse = (v: unknown, previous: unknown) => {
    try {
      return option.parseArg ? option.parseArg(String(v), previous) : String(v);
    } catch (e) {
      throw new TapboxError('EUSAGE', problem(file, key, (e as Error).message.replace(/^error: /, '').replace(/^tapbox: /, '')));
    }
  };
  // A repeatable flag's values go through its parser one by one, as repeated flags do.
  return list ? (value as unknown[]).reduce((previous, v) => parse(v, previous), option.defaultValue) : parse(value, undefined);
}

/** The effective settings of `program` (after its config files), as a config file would give them. */
export function effectiveSettings(program: Command, command: string[]): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const entry of configKeys(program).values()) {
    const value = program.getOptionValue(entry.attribute);
    if (value !== undefined) settings[entry.key] = value;
  }
  if (command.length) settings.command = command;
  return settings;
}

/**
 * Adds `tapbox config --print [options] [-- COMMAND]` (the effective settings, as JSON) and
 * `tapbox config --schema` (the config files' JSON Schema). `build` makes a fresh program to parse
 * the run's options with.
 */
export function addConfigCommand(program: Command, build: () => Command, done: (status: number) => void): void {
  program
    .command('config')
    .description('--print [options]: the settings a run with these options (and their --config files) would have, as JSON; --schema: the JSON Schema of config files')
    .option('--print', 'print the effective settings')
    .option('--schema', 'print the JSON Schema of config files')
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption(false)
    .argument('[options...]')
    .action(async (_args: string[], flags: { print?: boolean; schema?: boolean }, command: Command) => {
      const run = addConfigOption(build()).exitOverride();
      if (flags.schema) {
        process.stdout.write(`${JSON.stringify(configSchema(run), null, 2)}\n`);
        return done(0);
      }
      if (!flags.print) throw new TapboxError('EUSAGE', '`tapbox config` needs --print [options] or --schema.');
      run.parse(command.args, { from: 'user' });
      const fromFile = await applyConfigFiles(run);
      process.stdout.write(`${JSON.stringify(effectiveSettings(run, run.args.length ? run.args : (fromFile.command ?? [])), null, 2)}\n`);
      done(0);
    });
}
