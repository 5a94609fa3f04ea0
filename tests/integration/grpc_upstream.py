#!/usr/bin/python3
"""A gRPC upstream for the gRPC tests (Debian's python3-grpcio; run with /usr/bin/python3).

Service `portico.test.Echo`, generic handlers with raw bytes (no .proto):
  Echo    unary: the request back; initial metadata x-peer (the connection as the server saw it)
          and x-echo (the request's x-echo, if any); trailing metadata x-trailer: done.
  Fail    unary: aborts with status NOT_FOUND and message "no such thing".
  Slow    unary: the request is a number of milliseconds to wait; a call cancelled meanwhile is
          counted (Stats "cancelled").
  Repeat  server streaming: request "N:SIZE": N messages of SIZE bytes ('a'..).
  Sum     client streaming: the total byte length of the messages received, as text.
  Chat    bidi: each message back, upper-cased.
  Stats   unary: JSON {"cancelled": n, "peers": [distinct peers seen], "metadata": {...}} where
          metadata is the last Echo call's invocation metadata.

Listens on 127.0.0.1 (ephemeral port) and writes the port to --port-file once serving. With
--cert/--key it serves TLS (ALPN h2).
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

lock = threading.Lock()
stats = {"cancelled": 0, "peers": [], "metadata": {}}


def note_peer(context):
    peer = context.peer()
    with lock:
        if peer not in stats["peers"]:
            stats["peers"].append(peer)


def echo(request, context):
    note_peer(context)
    metadata = dict(context.invocation_metadata())
    with lock:
        stats["metadata"] = {k: v for k, v in metadata.items() if isinstance(v, str)}
    initial = [("x-peer", context.peer())]
    if "x-echo" in metadata:
        initial.append(("x-echo", metadata["x-echo"]))
    context.send_initial_metadata(initial)
    context.set_trailing_metadata([("x-trailer", "done")])
    return request


def big_head(request, context):
    # Initial metadata with one value as long as the request says (its bytes, in decimal).
    note_peer(context)
    context.send_initial_metadata([("x-big", "b" * int(request.decode()))])
    return b"ok"


def fail(request, context):
    note_peer(context)
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    note_peer(context)
    wait_ms = int(request.decode() or "0")
    cancelled = threading.Event()
    context.add_callback(cancelled.set)
    deadline = time.monotonic() + wait_ms / 1000.0
    while time.monotonic() < deadline:
        if cancelled.wait(0.01) or not context.is_active():
            with lock:
                stats["cancelled"] += 1
            return b""
    return b"slept"


def repeat(request, context):
    note_peer(context)
    count, size = (int(x) for x in request.decode().split(":"))
    for i in range(count):
        yield bytes([ord("a") + i % 26]) * size


def total(request_iterator, context):
    note_peer(context)
    n = 0
    for message in request_iterator:
        n += len(message)
    return str(n).encode()


def chat(request_iterator, context):
    note_peer(context)
    for message in request_iterator:
        yield message.upper()


def get_stats(request, context):
    with lock:
        return json.dumps(stats).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "BigHead": grpc.unary_unary_rpc_method_handler(big_head),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Repeat": grpc.unary_stream_rpc_method_handler(repeat),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Stats": grpc.unary_unary_rpc_method_handler(get_stats),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                         options=[("grpc.max_receive_message_length", 8 << 20),
                                  ("grpc.max_send_message_length", 8 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("portico.test.Echo", handlers),))
    if args.cert:
        with open(args.key, "rb") as f:
            key = f.read()
        with open(args.cert, "rb") as f:
            cert = f.read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, args.port_file)
    print("listening on port %d" % port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    server.stop(0.5).wait()


if __name__ == "__main__":
    sys.exit(main())
