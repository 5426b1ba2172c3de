"""An HTTP/1.1 server on http.server, as small apps write them: it appends one JSON line per request
it handles (method, target, Host, the client's port) to the file named by argv[1], then answers 200. Like
SimpleHTTPRequestHandler it ignores the body of GET and HEAD; other methods read theirs by
Content-Length, or chunked when Transfer-Encoding says so. Prints its port on stdout once listening."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def handle_any(self):
        with open(LOG, 'a') as f:
            f.write(json.dumps({'method': self.command, 'target': self.path, 'host': self.headers.get('Host'), 'port': self.client_address[1]}) + '\n')
        if self.command not in ('GET', 'HEAD'):
            self.read_body()
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(b'ok')

    def read_body(self):
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    return
                self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            self.rfile.read(length)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_TRACE = handle_any


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # resets from the test's relay are expected


server = Server(('127.0.0.1', 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
