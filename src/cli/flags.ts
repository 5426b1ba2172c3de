// Argument parsers shared by the CLI's flags (commander calls them with each value given).
import { TapboxError } from '../errors.js';

/** For a repeatable flag: each value given is appended to the list. */
export const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** A whole-number flag; `example`, when given, is named in the error sentence. */
export function integer(flag: string, example?: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) {
      throw new TapboxError('EUSAGE', `${flag} takes a whole number, not "${value}"${example === undefined ? '' : `; e.g. ${flag} ${example}`}.`);
    }
    return Number(value);
  };
}
