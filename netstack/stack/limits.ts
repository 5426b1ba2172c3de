// Resource caps of the stack, named the way the audit log reports them. A cap that is hit degrades the
// newest work (RST, ICMP, drop) and calls the LimitHook so the supervisor can log it; the hook may be
// called once per packet, so whoever implements it rate-limits what it logs.

export type LimitName =
  /** TCP connection requests waiting for the forwarder, in total or per destination. */
  | 'tcp-pending'
  /** Bytes held in every TCP send and receive buffer together. */
  | 'tcp-buffers'
  /** Out-of-order bytes held by one connection, or by all of them. */
  | 'tcp-out-of-order'
  | 'udp-sessions'
  /** Memory of incomplete IP datagrams. */
  | 'reassembly';

/** `value` is the configured cap; `detail` says which part of it and what was done. */
export type LimitHook = (limit: LimitName, value: number, detail: string) => void;
