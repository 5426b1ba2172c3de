// The forwarder's defaults alone: checking options on every run needs them (src/options/network-limits.ts),
// and this module loads nothing else, so a run without --net tap never loads the forwarder and the policy.

/**
 * Open flows (TCP and UDP, DNS excluded) when neither the allowlists nor the options set a limit. Twice
 * the stack's UDP session cap (4096), so a UDP flood, held there, still leaves room for TCP.
 */
export const DEFAULT_MAX_FLOWS = 8192;
