#!/usr/bin/env python3
"""A small HTTPS upstream for the upstream TLS integration tests (stdlib only).

Listens on 127.0.0.1 (ephemeral port, printed as "listening on port N"), serves HTTP/1.1 with
keep-alive over TLS with --cert/--key, and, with --client-ca, requires a client certificate
issued by that CA. Every response is JSON: what the TLS handshake of its connection saw (the SNI,
the client certificate's subject CN, whether the session was resumed, the protocol version), the
request (method, path, Host) and counters so far (TLS connections, resumed ones, requests).
`?close=1` answers with Connection: close and closes (the next request needs a new connection).
"""
import argparse
import http.server
import hashlib
import json
import socketserver
import ssl
import sys
import threading

stats_lock = threading.Lock()
stats = {"connections": 0, "resumed": 0, "requests": 0, "handshake_failures": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        raw = self.request
        try:
            self.request = self.server.tls.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with stats_lock:
                stats["handshake_failures"] += 1
            print("handshake failed: %s" % e, flush=True)
            raw.close()
            raise
        self.request.settimeout(30)
        with stats_lock:
            stats["connections"] += 1
            if self.request.session_reused:
                stats["resumed"] += 1
        super().setup()

    def do_GET(self):
        with stats_lock:
            stats["requests"] += 1
            counters = dict(stats)
        peer = self.request.getpeercert()
        subject_cn = None
        if peer:
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        subject_cn = value
        body = json.dumps({
            "sni": getattr(self.request, "portico_sni", None),
            "client_cert_cn": subject_cn,
            "session_reused": self.request.session_reused,
            "tls_version": self.request.version(),
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "stats": counters,
        }).encode()
        close = "close=1" in self.path
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        # The body's length and SHA-256, so a test can check that every byte arrived.
        length = int(self.headers.get("Content-Length", "0"))
        data = b""
        while len(data) < length:
            chunk = self.rfile.read(length - len(data))
            if not chunk:
                break
            data += chunk
        body = json.dumps({"body_length": len(data), "body_sha256": hashlib.sha256(data).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # handshake failures are counted and printed in setup()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca")
    args = parser.parse_args()

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        tls.verify_mode = ssl.CERT_REQUIRED
        tls.load_verify_locations(args.client_ca)

    def remember_sni(sock, server_name, context):
        sock.portico_sni = server_name
        return None

    tls.sni_callback = remember_sni
    server = Server(("127.0.0.1", 0), Handler)
    server.tls = tls
    print("listening on port %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
