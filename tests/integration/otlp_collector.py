#!/usr/bin/env python3
"""An OTLP/HTTP collector stub for tests (stdlib only).

Usage: otlp_collector.py PORT_FILE OUT_FILE [STATUS]
Listens on 127.0.0.1 (an ephemeral port, written to PORT_FILE once listening). Every POST is
answered with STATUS (default 200) and, when 2xx, recorded as one JSON line in OUT_FILE:
{"path": ..., "content_type": ..., "body": <the parsed body, or null when not JSON>}.
"""
import http.server
import json
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        status = self.server.answer_status
        if 200 <= status < 300:
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError:
                body = None
            record = {"path": self.path, "content_type": self.headers.get("Content-Type"), "body": body,
                      "headers": {k.lower(): v for k, v in self.headers.items()}}
            with open(self.server.out_file, "a") as out:
                out.write(json.dumps(record) + "\n")
        payload = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, fmt, *args):
        sys.stderr.write("otlp_collector: " + (fmt % args) + "\n")


def main():
    port_file, out_file = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.out_file = out_file
    server.answer_status = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
