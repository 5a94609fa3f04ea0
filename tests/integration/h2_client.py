#!/usr/bin/env python3
"""A raw HTTP/2 client for tests/integration/h2_test.cc: frames are built by hand and header blocks
encoded with hpack (from python3-h2), so it can send what a conforming client never would.
Run with /usr/bin/python3 (Debian's, which has python3-h2).

  h2_client.py PORT SCENARIO [ARG...]

Prints one JSON object on stdout: {"settings": {id: value} (the server's first SETTINGS),
"events": [...], "closed": bool}; an event is
  {"type": "response", "stream": n, "status": s, "headers": [[name, value], ...], "body_len": n}
  {"type": "rst", "stream": n, "error": code}
  {"type": "goaway", "last_stream": n, "error": code, "debug": text}
Scenarios (PATH is a route served by the DP):
  get PATH                        one GET
  header PATH NAME VALUE          a GET with one extra header, sent as given (no validation)
  pseudo_after_regular PATH       :path after a regular header
  missing_path                    no :path
  content_length PATH DECLARED SENT   a POST declaring DECLARED bytes, then SENT bytes of DATA
  bad_hpack                       a HEADERS frame whose block is not HPACK
  oversized_frame PATH            a HEADERS frame one byte longer than the server's max frame size
  data_on_stream0                 a DATA frame on stream 0
  big_headers PATH BYTES [FRAME]  a GET carrying about BYTES of header fields, in a HEADERS frame and
                                  CONTINUATION frames of the max frame size (or FRAME bytes)
  concurrent PATH EXTRA           max-concurrent-streams + EXTRA GETs at once (after the SETTINGS
                                  exchange); "max" in the output is the server's limit
  rapid_reset PATH STREAMS GOOD_PATH
                                  STREAMS GETs each cancelled at once (RST_STREAM CANCEL), in a loop;
                                  meanwhile a second connection sends GETs to GOOD_PATH one after
                                  the other. Output adds "sent" (streams opened before the server
                                  stopped the loop), "good_ok", "good_failed", "good_errors"
  drain PATH READY_FILE           one GET, then writes READY_FILE and waits (up to 20 s) for a GOAWAY
Every wait is bounded; the script exits 0 whenever it could report, 2 on a usage error.
"""
import json
import os
import socket
import struct
import sys
import threading
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_FRAME_SIZE = 0x3, 0x5


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, kind, flags, stream & 0x7FFFFFFF) + payload


class Connection:
    """One HTTP/2 connection; a reader thread collects events, answers PING and SETTINGS."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.lock = threading.Condition()
        self.write_lock = threading.Lock()
        self.events = []
        self.settings = None  # the server's first SETTINGS
        self.settings_acked = False  # the server acknowledged ours
        self.closed = False
        self.goaway = None
        self.responses = {}  # stream -> {"status", "headers", "body_len"}
        self.done = set()  # streams ended (END_STREAM or RST_STREAM)
        self.send(PREFACE + frame(SETTINGS, 0, 0))
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def send(self, data):
        with self.write_lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def headers_block(self, headers):
        return self.encoder.encode(headers)

    def send_headers(self, stream, headers, end_stream=True):
        block = self.headers_block(headers)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return self.send(frame(HEADERS, flags, stream, block))

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError()
            data += chunk
        return data

    def _read_loop(self):
        header_stream, header_block, header_end_stream = None, b"", False
        try:
            while True:
                head = self._recv_exact(9)
                length = (head[0] << 16) | (head[1] << 8) | head[2]
                kind, flags, stream = head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
                payload = self._recv_exact(length)
                with self.lock:
                    if kind == SETTINGS and not flags & ACK:
                        if self.settings is None:
                            self.settings = {}
                            for i in range(0, len(payload) - 5, 6):
                                key, value = struct.unpack(">HI", payload[i:i + 6])
                                self.settings[key] = value
                        self.send(frame(SETTINGS, ACK, 0))
                    elif kind == SETTINGS:
                        self.settings_acked = True
                    elif kind == PING and not flags & ACK:
                        self.send(frame(PING, ACK, 0, payload))
                    elif kind == GOAWAY:
                        last, code = struct.unpack(">II", payload[:8])
                        self.goaway = {"type": "goaway", "last_stream": last & 0x7FFFFFFF, "error": code,
                                       "debug": payload[8:].decode("utf-8", "replace")}
                        self.events.append(self.goaway)
                    elif kind == RST_STREAM:
                        self.events.append({"type": "rst", "stream": stream, "error": struct.unpack(">I", payload)[0]})
                        self.done.add(stream)
                    elif kind in (HEADERS, CONTINUATION):
                        if kind == HEADERS:
                            if flags & PADDED:
                                payload = payload[1:len(payload) - payload[0]]
                            if flags & PRIORITY_FLAG:
                                payload = payload[5:]
                            header_stream, header_block, header_end_stream = stream, b"", bool(flags & END_STREAM)
                        header_block += payload
                        if flags & END_HEADERS:
                            fields = [[n.decode() if isinstance(n, bytes) else n, v.decode() if isinstance(v, bytes) else v]
                                      for n, v in self.decoder.decode(header_block, raw=True)]
                            response = self.responses.get(header_stream)
                            if response is None:
                                status = next((int(v) for n, v in fields if n == ":status"), 0)
                                response = {"type": "response", "stream": header_stream, "status": status,
                                            "headers": fields, "body_len": 0}
                                self.responses[header_stream] = response
                                self.events.append(response)
                            else:
                                response["trailers"] = fields
                            if header_end_stream:
                                self.done.add(header_stream)
                    elif kind == DATA:
                        if flags & PADDED:
                            payload = payload[1:len(payload) - payload[0]]
                        if stream in self.responses:
                            self.responses[stream]["body_len"] += len(payload)
                        if length:
                            update = struct.pack(">I", length)
                            self.send(frame(WINDOW_UPDATE, 0, 0, update) + frame(WINDOW_UPDATE, 0, stream, update))
                        if flags & END_STREAM:
                            self.done.add(stream)
                    self.lock.notify_all()
        except (EOFError, OSError, hpack.HPACKError, struct.error):
            pass
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    def wait(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return predicate()
                self.lock.wait(min(left, 0.2))
            return True

    def wait_settings(self):
        return self.wait(lambda: self.settings is not None and self.settings_acked)

    def wait_streams(self, streams, timeout=10.0):
        """Until every stream ended, the server sent GOAWAY or closed, or the timeout."""
        return self.wait(lambda: all(s in self.done for s in streams) or self.goaway is not None, timeout)

    def wait_closed(self, timeout=5.0):
        return self.wait(lambda: self.closed, timeout)

    def report(self, **extra):
        with self.lock:
            out = {"settings": self.settings or {}, "events": list(self.events), "closed": self.closed}
        out.update(extra)
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request_headers(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", "h2.test")] + list(extra)


def after_error(c, streams=(1,)):
    """The server's answer to a refused request: a stream error or a connection error (then the close)."""
    c.wait_streams(streams)
    if c.goaway is not None:
        c.wait_closed()
    else:
        time.sleep(0.2)  # nothing more should come (e.g. a late response): collect it if it does


def run(port, scenario, args):
    c = Connection(port)
    c.wait_settings()
    if scenario == "get":
        c.send_headers(1, request_headers(args[0]))
        c.wait_streams([1])
    elif scenario == "header":
        c.send_headers(1, request_headers(args[0], extra=[(args[1], args[2])]))
        after_error(c)
    elif scenario == "pseudo_after_regular":
        c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test"),
                           ("user-agent", "h2_client"), (":path", args[0])])
        after_error(c)
    elif scenario == "missing_path":
        c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test")])
        after_error(c)
    elif scenario == "content_length":
        declared, sent = int(args[1]), int(args[2])
        c.send_headers(1, request_headers(args[0], "POST", [("content-length", str(declared))]), end_stream=False)
        c.send(frame(DATA, END_STREAM, 1, b"x" * sent))
        after_error(c)
    elif scenario == "bad_hpack":
        # 0xff...: an indexed field whose index never ends (an integer overflow), then junk.
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff" * 12 + b"\x00garbage"))
        after_error(c)
    elif scenario == "oversized_frame":
        # A valid field block padded with zero bytes (each a literal field) to one byte over the limit:
        # the frame header alone tells the server it is too large.
        limit = c.settings.get(SETTINGS_MAX_FRAME_SIZE, 16384) if c.settings else 16384
        if limit >= (1 << 24) - 1:
            out = c.report(error=f"max frame size {limit}: no frame can exceed it")
            c.close()
            return out
        block = c.headers_block(request_headers(args[0]))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block + bytes(limit + 1 - len(block))))
        after_error(c)
    elif scenario == "data_on_stream0":
        c.send(frame(DATA, 0, 0, b"hello"))
        after_error(c, streams=())
    elif scenario == "big_headers":
        size = int(args[1])
        extra = [(f"x-big-{i}", "v" * 4000) for i in range(max(1, size // 4000))]
        block = c.headers_block(request_headers(args[0], extra=extra))
        limit = c.settings.get(SETTINGS_MAX_FRAME_SIZE, 16384) if c.settings else 16384
        if len(args) > 2:
            limit = min(limit, int(args[2]))
        pieces = [block[i:i + limit] for i in range(0, len(block), limit)]
        data = b""
        for i, piece in enumerate(pieces):
            kind = HEADERS if i == 0 else CONTINUATION
            flags = (END_STREAM if i == 0 else 0) | (END_HEADERS if i == len(pieces) - 1 else 0)
            data += frame(kind, flags, 1, piece)
        c.send(data)
        after_error(c)
        out = c.report(block_bytes=len(block), frames=len(pieces))
        c.close()
        return out
    elif scenario == "concurrent":
        limit = (c.settings or {}).get(SETTINGS_MAX_CONCURRENT_STREAMS)
        if limit is None or limit > 10000:
            out = c.report(max=limit, error="no usable SETTINGS_MAX_CONCURRENT_STREAMS")
            c.close()
            return out
        count = limit + int(args[1])
        streams = [1 + 2 * i for i in range(count)]
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, s, c.headers_block(request_headers(args[0])))
                        for s in streams))
        c.wait_streams(streams, timeout=20.0)
        out = c.report(max=limit, streams=count)
        c.close()
        return out
    elif scenario == "rapid_reset":
        return rapid_reset(c, port, args[0], int(args[1]), args[2])
    elif scenario == "drain":
        c.send_headers(1, request_headers(args[0]))
        c.wait_streams([1])
        with open(args[1] + ".tmp", "w") as f:
            f.write("ready\n")
        os.rename(args[1] + ".tmp", args[1])
        c.wait(lambda: c.goaway is not None, timeout=20.0)
        c.wait_closed(timeout=10.0)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = c.report()
    c.close()
    return out


def rapid_reset(c, port, path, count, good_path):
    stop = threading.Event()
    good = {"ok": 0, "failed": 0, "errors": []}

    def good_client():
        # A well-behaved client: one GET at a time on its own connection, a new connection if the
        # server ever closes this one (counted as a failure).
        g = Connection(port)
        g.wait_settings()
        stream = 1
        while not stop.is_set():
            g.send_headers(stream, request_headers(good_path))
            g.wait(lambda: stream in g.done or (g.goaway is not None and stream > g.goaway["last_stream"]),
                   timeout=5.0)
            response = g.responses.get(stream)
            if response is not None and response["status"] == 200 and stream in g.done:
                good["ok"] += 1
            elif g.goaway is not None and stream > g.goaway["last_stream"] and g.goaway["error"] == 0:
                pass  # a graceful GOAWAY (e.g. a request limit) that left this stream unprocessed: retried
            else:
                good["failed"] += 1
                good["errors"].append(g.report(stream=stream)["events"][-3:])
            if g.goaway is not None or g.closed or stream not in g.done:
                g.close()
                g = Connection(port)
                g.wait_settings()
                stream = -1
            stream += 2
        g.close()

    worker = threading.Thread(target=good_client, daemon=True)
    worker.start()
    time.sleep(0.3)  # the good client is under way before the attack starts
    sent = 0
    batch = []
    for i in range(count):
        stream = 1 + 2 * i
        batch.append(frame(HEADERS, END_HEADERS | END_STREAM, stream, c.headers_block(request_headers(path))))
        batch.append(frame(RST_STREAM, 0, stream, struct.pack(">I", 0x8)))  # CANCEL
        if len(batch) >= 40 or i == count - 1:
            if c.goaway is not None or c.closed or not c.send(b"".join(batch)):
                break
            sent = i + 1
            batch = []
    c.wait(lambda: c.goaway is not None, timeout=5.0)
    c.wait_closed(timeout=5.0)
    time.sleep(1.0)  # the good client keeps going after the attack was cut off
    stop.set()
    worker.join(timeout=15.0)
    out = c.report(sent=sent, good_ok=good["ok"], good_failed=good["failed"], good_errors=good["errors"][:5])
    out["events"] = [e for e in out["events"] if e["type"] == "goaway"]  # thousands of RST_STREAM otherwise
    c.close()
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        out = run(int(argv[1]), argv[2], argv[3:])
    except Exception as e:  # reported to the test, which fails on it
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
