// Ask mode on the user's terminal: the question is written to the supervisor's /dev/tty and the answer
// read there, one key. When the command runs on tapbox's pty relay (terminal.ts), the relay hands the
// keyboard over for the question: keys go to the prompt, not to the sandbox, and the sandbox's output
// waits, so it can't draw over the question. The sandbox can't answer: its terminal is its own pty
// (or no terminal), in its own session, and TIOCSTI is refused by its seccomp filter.
import { closeSync, openSync, writeSync } from 'node:fs';
import tty from 'node:tty';
import { printable } from '../egress/dns/names.js';
import type { Prompter } from '../egress/ask/asker.js';
import { describeAsker, describeRequest, type AskAnswer } from '../egress/ask/request.js';
import { terminalRelay } from './terminal.js';

const KEYS: Record<string, AskAnswer> = { o: 'once', r: 'run', a: 'save', d: 'deny', n: 'deny', '\x03': 'deny' };

export function terminalPrompter(timeoutMs: number, saveFile?: string): Prompter {
  return (request, signal) =>
    new Promise<AskAnswer>((resolve, reject) => {
      let out: number;
      try {
        out = openSync('/dev/tty', 'w');
      } catch (e) {
        return reject(new Error(`cannot open the terminal: ${(e as Error).message}`));
      }
      const write = (text: string) => {
        try {
          writeSync(out, text);
        } catch {
          // the terminal went away: the timeout answers
        }
      };
      const who = describeAsker(request);
      const choices = ['[o] allow once', '[r] allow for this run', ...(saveFile ? [`[a] allow and add to ${printable(saveFile)}`] : []), '[d] deny'];
      write(
        `\r\n\x1b[1mtapbox: the sandbox asks to ${printable(describeRequest(request))}\x1b[0m\r\n` +
          (who ? `  asked by ${who}\r\n` : '') +
          `  ${choices.join('   ')}   (no answer in ${Math.round(timeoutMs / 1000)} s: deny) `,
      );
      let finished = false;
      const finish = (answer: AskAnswer | null, shown: string) => {
        if (finished) return;
        finished = true;
        write(`${shown}\r\n`);
        release();
        closeSync(out);
        if (answer) resolve(answer);
        else reject(new Error('aborted'));
      };
      const onKey = (chunk: Buffer) => {
        for (const key of chunk.toString('latin1').toLowerCase()) {
          const answer = KEYS[key];
          if (!answer || (answer === 'save' && !saveFile)) continue;
          return finish(answer, key === '\x03' ? '^C deny' : key);
        }
      };
      const release = takeKeyboard(onKey);
      signal.addEventListener('abort', () => finish(null, '(no answer: deny)'), { once: true });
    });
}

/** Routes the terminal's keys to `onKey` until the returned function is called. */
function takeKeyboard(onKey: (chunk: Buffer) => void): () => void {
  const relay = terminalRelay();
  if (relay) return relay.takeTerminal(onKey);
  // No relay (the command's stdio is not the terminal, or is only partly): read /dev/tty ourselves.
  const input = new tty.ReadStream(openSync('/dev/tty', 'r'));
  input.setRawMode(true);
  input.on('data', onKey);
  input.on('error', () => undefined);
  return () => {
    input.setRawMode(false);
    input.destroy();
  };
}
