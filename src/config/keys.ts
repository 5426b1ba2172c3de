// The keys of a config file and its JSON Schema, both read off the CLI's own options, so that every
// option has a key and a new option gets one without anyone remembering to add it: the key is the
// option's long name (`allow-file`, `memory`, `sni-check` for --no-sni-check), its value what the
// flag takes (a boolean for a flag without a value, an array for a repeatable one). zbox's keys are
// accepted besides (./zbox.ts). schema/tapbox.schema.json is this schema as shipped; a test keeps it
// equal to `tapbox config --schema`.
import type { Command, Option } from 'commander';
import { ZBOX_SCHEMA } from './zbox.js';

/** One key: the option(s) behind it (--x and --no-x share one) and the shape of its value. */
export interface ConfigKey {
  key: string;
  /** The attribute commander keeps the value under. */
  attribute: string;
  options: Option[];
  /** Repeatable: an array of values. */
  list: boolean;
}

/**
 * Options that are not settings of a run; nor is what names a box under `run` (-d, --name, --rm):
 * the command line gives those (zbox's `name` can name a detached box, see ./index.ts).
 */
const NOT_SETTINGS = new Set(['help', 'config', 'detach', 'name', 'rm']);

const kebab = (attribute: string) => attribute.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export function configKeys(program: Command): Map<string, ConfigKey> {
  const keys = new Map<string, ConfigKey>();
  for (const option of program.options) {
    const attribute = option.attributeName();
    if (NOT_SETTINGS.has(attribute)) continue;
    const key = kebab(attribute);
    const entry = keys.get(key) ?? { key, attribute, options: [], list: false };
    entry.options.push(option);
    // Repeatable: collected into an array from the start, or an accumulating parser whose help says so.
    entry.list ||= Array.isArray(option.defaultValue) || /\(repeatable/.test(option.description);
    keys.set(key, entry);
  }
  return keys;
}

type Schema = Record<string, unknown>;

function valueSchema(option: Option, list: boolean): Schema {
  if (option.negate) return { const: false };
  if (!option.required && !option.optional) return { type: 'boolean' };
  const one: Schema = option.argChoices ? { enum: option.argChoices } : { type: ['string', 'number'] };
  return list ? { type: 'array', items: one } : one;
}

function keySchema(entry: ConfigKey): Schema {
  const shapes = entry.options.map((o) => valueSchema(o, entry.list));
  // A boolean flag and its --no- form: one boolean.
  const merged = shapes.every((s) => s.type === 'boolean' || s.const === false) ? [{ type: 'boolean' }] : shapes;
  const description = entry.options.map((o) => `${o.flags}: ${o.description}`).join('; ');
  return merged.length === 1 ? { description, ...merged[0] } : { description, anyOf: merged };
}

/** The JSON Schema of a config file for `program`'s options. */
export function configSchema(program: Command): Schema {
  const properties: Record<string, Schema> = { $schema: { type: 'string', description: 'the schema this file follows (for editors)' } };
  for (const entry of configKeys(program).values()) properties[entry.key] = keySchema(entry);
  // zbox's `root` (a directory) shares its key with tapbox's --root (uid 0, a boolean): either fits.
  for (const [key, schema] of Object.entries(ZBOX_SCHEMA)) properties[key] = properties[key] ? { anyOf: [properties[key], schema] } : schema;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'tapbox config file (tapbox --config FILE)',
    description: 'Each key is a tapbox option by its long name, with what the flag takes; flags given on the command line win. zbox\'s keys are accepted as they are.',
    type: 'object',
    properties,
    additionalProperties: false,
  };
}
