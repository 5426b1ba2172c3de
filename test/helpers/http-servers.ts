// Real HTTP/1 servers on loopback for the differential test of the HTTP check: Node's parser (strict,
// and with insecureHTTPParser), Python's http.server (test/helpers/servers/http-log.py) and nginx from
// Debian. Each records the requests it handled (method, target, Host) so that a test can compare them
// with what the framer checked.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SeenRequest {
  method: string;
  target: string;
  /** The Host the server routed by (null: none). */
  host: string | null;
  /** The client's port: which connection the request came on. */
  port: number;
}

export interface LoggingServer {
  name: string;
  port: number;
  /** Every request handled so far, in order. */
  seen(): SeenRequest[];
  close(): Promise<void>;
}

export async function startNodeServer(insecure: boolean): Promise<LoggingServer> {
  const seen: SeenRequest[] = [];
  const server = http.createServer({ insecureHTTPParser: insecure }, (req, res) => {
    seen.push({ method: req.method ?? '', target: req.url ?? '', host: req.headers.host ?? null, port: req.socket.remotePort ?? 0 });
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    name: insecure ? 'node (insecureHTTPParser)' : 'node',
    port: (server.address() as net.AddressInfo).port,
    seen: () => [...seen],
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

function readLog(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

function waitForExit(child: ChildProcess): Promise<void> {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
}

export async function startPythonServer(): Promise<LoggingServer> {
  const dir = mkdtempSync(join(tmpdir(), 'tapbox-py-'));
  const log = join(dir, 'requests.log');
  const child = spawn('python3', [new URL('./servers/http-log.py', import.meta.url).pathname, log], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`python3 http-log.py exited (${code}): is python3 installed?`)));
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  return {
    name: 'python http.server',
    port,
    seen: () => readLog(log).map((l) => JSON.parse(l) as SeenRequest),
    close: async () => {
      child.kill();
      await waitForExit(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** nginx in the foreground, one process, config and logs in a temp dir; its access log says what it routed. */
export async function startNginx(): Promise<LoggingServer> {
  const binary = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(existsSync);
  if (!binary) throw new Error('nginx is not installed: apt-get install nginx-light');
  const dir = mkdtempSync(join(tmpdir(), 'tapbox-nginx-'));
  const port = await freePort();
  const log = join(dir, 'access.log');
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${join(dir, t)};`).join(' ');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off; master_process off; worker_processes 1; pid ${join(dir, 'nginx.pid')}; error_log ${join(dir, 'error.log')};
events { worker_connections 64; }
http {
  ${temps}
  log_format seen escape=json '{"method":"$request_method","target":"$request_uri","host":"$host","header":"$http_host","status":"$status","port":"$remote_port"}';
  access_log ${log} seen;
  server {
    listen 127.0.0.1:${port};
    server_name _;
    location / { return 200 "ok"; }
  }
}
`,
  );
  const child = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'inherit' });
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (up) break;
    if (i > 100 || child.exitCode !== null) throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: 'nginx',
    port,
    // Only the requests it routed to the location (status 200), not those it refused as malformed; by
    // the host it routed by ($host: an absolute-form target's, else Host's).
    seen: () =>
      readLog(log)
        .map((l) => JSON.parse(l) as { method: string; target: string; host: string; header: string; status: string; port: string })
        .filter((e) => e.status === '200')
        .map((e) => ({ method: e.method, target: e.target, host: e.host === '_' || e.host === '' ? e.header || null : e.host, port: Number(e.port) })),
    close: async () => {
      child.kill('SIGQUIT');
      await waitForExit(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
