#!/usr/bin/python3
"""A gRPC client for the gRPC integration tests (Debian's python3-grpcio; run with /usr/bin/python3).

Calls `portico.test.Echo` (tests/integration/grpc_upstream.py) at --target over h2c, once per
scenario named on the command line, and prints one JSON object: {scenario: result}. Each result
has "code" (the gRPC status name) and "details", plus what the scenario received. Every call has
a deadline (--timeout seconds unless the scenario sets its own).

Scenarios: unary, fail, server_stream, client_stream, bidi, deadline, stats.
"""
import argparse
import json
import sys

import grpc

SERVICE = "/portico.test.Echo/"


def identity(b):
    return b


def run(channel, scenario, timeout):
    def method(name, kind):
        make = getattr(channel, kind)
        return make(SERVICE + name, request_serializer=identity, response_deserializer=identity)

    out = {}
    try:
        if scenario == "unary":
            call = method("Echo", "unary_unary")
            reply, info = call.with_call(b"hello through portico", timeout=timeout,
                                         metadata=[("x-echo", "metadata-in")])
            out["reply"] = reply.decode()
            out["initial"] = {k: v for k, v in info.initial_metadata() if isinstance(v, str)}
            out["trailing"] = {k: v for k, v in info.trailing_metadata() if isinstance(v, str)}
            out["code"] = info.code().name
        elif scenario == "fail":
            method("Fail", "unary_unary")(b"x", timeout=timeout)
            out["code"] = "OK"
        elif scenario == "server_stream":
            sizes = [len(m) for m in method("Repeat", "unary_stream")(b"3:1048576", timeout=timeout)]
            out["sizes"] = sizes
            out["code"] = "OK"
        elif scenario == "client_stream":
            messages = [b"a" * (1 << 20), b"b" * 1000, b"c"]
            out["reply"] = method("Sum", "stream_unary")(iter(messages), timeout=timeout).decode()
            out["code"] = "OK"
        elif scenario == "bidi":
            replies = method("Chat", "stream_stream")(iter([b"one", b"two", b"x" * 100000]), timeout=timeout)
            out["replies"] = [r.decode() if len(r) < 100 else len(r) for r in replies]
            out["code"] = "OK"
        elif scenario == "deadline":
            method("Slow", "unary_unary")(b"5000", timeout=0.5)
            out["code"] = "OK"
        elif scenario == "stats":
            out["stats"] = json.loads(method("Stats", "unary_unary")(b"", timeout=timeout))
            out["code"] = "OK"
        else:
            out["code"] = "UNKNOWN_SCENARIO"
    except grpc.RpcError as e:
        out["code"] = e.code().name
        out["details"] = e.details()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args()
    results = {}
    with grpc.insecure_channel(args.target) as channel:
        for scenario in args.scenarios:
            results[scenario] = run(channel, scenario, args.timeout)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    sys.exit(main())
