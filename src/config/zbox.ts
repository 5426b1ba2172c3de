// zbox's config keys (github.com/bxrne/zbox, config.json), accepted as they are and turned into the
// tapbox settings that mean the same:
//   name               the sandbox's name (zbox names its cgroup with it) → hostname
//   root               the sandbox's root directory                       → rootfs
//   binary             what runs in it                                    → the command, when the
//                                                                           command line gives none
//   cpu_cores          run on that many CPUs (zbox: cpuset 0..N-1)         → cpuset
//   cpu_limit_percent  of those CPUs' time (zbox: quota N x percent)      → cpus
//   memory_limit_mb    memory, MiB                                        → memory
//   network_access     true: a network; false (zbox's default): none      → net tap / net none
//   port_forwards      [{host, sandbox}]                                  → publish HOST:SANDBOX
// network_access true gives tapbox's own network, whose egress its allowlist decides (none without
// allow rules), never the host's network as zbox's NAT does.

const port = { type: 'integer', minimum: 1, maximum: 65535 };

export const ZBOX_SCHEMA: Record<string, Record<string, unknown>> = {
  name: { description: 'zbox: the sandbox\'s name, here its hostname', type: 'string', minLength: 1 },
  root: { description: 'zbox: the sandbox\'s root directory (as rootfs)', type: 'string', pattern: '^/' },
  binary: { description: 'zbox: the program to run, when the command line gives none', type: 'string', pattern: '^/' },
  cpu_cores: { description: 'zbox: run on this many CPUs (as cpuset 0..N-1)', type: 'integer', minimum: 1 },
  cpu_limit_percent: { description: 'zbox: percent of those CPUs\' time (as cpus)', type: 'integer', minimum: 1, maximum: 100 },
  memory_limit_mb: { description: 'zbox: memory in MiB (as memory)', type: 'integer', minimum: 1 },
  network_access: { description: 'zbox: true for a network (tapbox\'s, through the allowlist: as net tap), false for none', type: 'boolean' },
  port_forwards: {
    description: 'zbox: ports published on the host (as publish HOST:SANDBOX)',
    type: 'array',
    items: { type: 'object', properties: { host: port, sandbox: port }, required: ['host', 'sandbox'], additionalProperties: false },
  },
};

export interface ZboxConfig {
  name?: string;
  root?: string;
  binary?: string;
  cpu_cores?: number;
  cpu_limit_percent?: number;
  memory_limit_mb?: number;
  network_access?: boolean;
  port_forwards?: { host: number; sandbox: number }[];
}

/**
 * The tapbox settings (config keys) zbox's keys in `config` stand for, each with the zbox key it
 * came from (the keys used are those), and the command `binary` names.
 */
export function fromZbox(config: ZboxConfig): { settings: [key: string, value: unknown, from: string][]; command?: string[] } {
  const settings: [string, unknown, string][] = [];
  if (config.name !== undefined) settings.push(['hostname', config.name, 'name']);
  // A boolean `root` is tapbox's --root.
  if (typeof config.root === 'string') settings.push(['rootfs', config.root, 'root']);
  const cores = config.cpu_cores;
  if (cores !== undefined) settings.push(['cpuset', `0-${cores - 1}`, 'cpu_cores']);
  if (config.cpu_limit_percent !== undefined) settings.push(['cpus', ((cores ?? 1) * config.cpu_limit_percent) / 100, 'cpu_limit_percent']);
  if (config.memory_limit_mb !== undefined) settings.push(['memory', `${config.memory_limit_mb}M`, 'memory_limit_mb']);
  if (config.network_access !== undefined) settings.push(['net', config.network_access ? 'tap' : 'none', 'network_access']);
  if (config.port_forwards !== undefined) settings.push(['publish', config.port_forwards.map((f) => `${f.host}:${f.sandbox}`), 'port_forwards']);
  return { settings, command: config.binary === undefined ? undefined : [config.binary] };
}
