// The addon's sock_diag calls (native/addon/sock_diag.cc) as attribution.ts uses them; their real use,
// in a sandbox's network namespace, is tested in test/integration/attribution.test.ts.
import { describe, expect, it } from 'vitest';
import { native } from '../../native/addon/index.js';

describe.runIf(native !== null)('sock_diag binding', () => {
  it('refuses a process it cannot join, with a sentence, and bad arguments', () => {
    expect(() => native!.openSockDiag(0x3ffffff0)).toThrow(/^cannot open a sock_diag socket in the sandbox's network namespace \(step 10\)$/);
    const four = Buffer.alloc(4);
    expect(() => native!.sockDiagInode(0, 'icmp' as never, 4, four, 1, four, 1)).toThrow(/proto must be 'tcp' or 'udp'/);
    expect(() => native!.sockDiagInode(0, 'tcp', 4, Buffer.alloc(16), 1, four, 1)).toThrow(/src must be a Buffer of the address's bytes/);
    expect(() => native!.sockDiagInode(0, 'tcp', 4, four, 70000, four, 1)).toThrow(/srcPort/);
  });
});
