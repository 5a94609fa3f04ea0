#!/usr/bin/python3
"""WebSocket peers for the integration tests and the benchmark, on Python's `websockets` (Debian's
python3-websockets; run with /usr/bin/python3).

  server [--cert C --key K]            echo server on 127.0.0.1 (ws, or wss with a certificate);
                                       prints "listening on port N". A text message "close:<code>:<reason>"
                                       makes the server start the close handshake with that code.
  client URL SCENARIO [--timeout S]    runs one scenario against URL and prints one JSON line;
                                       exit status 0 when the scenario held, 1 otherwise.

Scenarios: echo (text, binary, a 3 MiB binary message), close (client- and server-initiated close
handshakes with their codes and reasons), idle (sends nothing and measures when the connection is
closed under it). Keep-alive pings are off on both sides so that only the test's bytes flow.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

import websockets


async def echo(ws, path=None):
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await ws.close(int(code), reason)
                return
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def serve(args):
    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
    async with websockets.serve(echo, "127.0.0.1", 0, ssl=context, ping_interval=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on port {port}", flush=True)
        await asyncio.Future()


def client_context(url):
    if not url.startswith("wss://"):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def connect(url, timeout):
    return await asyncio.wait_for(
        websockets.connect(url, ssl=client_context(url), ping_interval=None, max_size=None, open_timeout=timeout),
        timeout)


async def scenario_echo(url, timeout):
    result = {}
    ws = await connect(url, timeout)
    await ws.send("hello")
    result["text"] = await asyncio.wait_for(ws.recv(), timeout)
    await ws.send(b"\x00\x01\x02binary")
    result["binary_ok"] = (await asyncio.wait_for(ws.recv(), timeout)) == b"\x00\x01\x02binary"
    big = os.urandom(3 * 1024 * 1024)
    await ws.send(big)
    back = await asyncio.wait_for(ws.recv(), timeout)
    result["large_bytes"] = len(back)
    result["large_ok"] = back == big
    many = [f"message {i}" for i in range(200)]
    for m in many:
        await ws.send(m)
    result["ordered_ok"] = [await asyncio.wait_for(ws.recv(), timeout) for _ in many] == many
    await ws.close()
    result["ok"] = (result["text"] == "hello" and result["binary_ok"] and result["large_ok"]
                    and result["ordered_ok"])
    return result


async def scenario_close(url, timeout):
    result = {}
    # Client-initiated: the server answers with the same code and reason.
    ws = await connect(url, timeout)
    await ws.close(4001, "client bye")
    result["client_close"] = [ws.close_code, ws.close_reason]
    # Server-initiated: the client sees the server's close frame, not a dropped connection.
    ws = await connect(url, timeout)
    await ws.send("close:4002:server bye")
    try:
        await asyncio.wait_for(ws.recv(), timeout)
        result["server_close"] = "no close"
    except websockets.ConnectionClosed as e:  # (codes other than 1000/1001 raise ConnectionClosedError)
        result["server_close"] = [e.rcvd.code, e.rcvd.reason] if e.rcvd else f"no close frame: {e}"
    await asyncio.wait_for(ws.wait_closed(), timeout)
    result["ok"] = (result["client_close"] == [4001, "client bye"]
                    and result["server_close"] == [4002, "server bye"])
    return result


async def scenario_idle(url, timeout):
    ws = await connect(url, timeout)
    start = time.monotonic()
    try:
        await asyncio.wait_for(ws.recv(), timeout)
        return {"ok": False, "error": "a message arrived"}
    except asyncio.TimeoutError:
        return {"ok": False, "error": "still open after the timeout"}
    except websockets.ConnectionClosed as e:
        return {"ok": True, "closed_after_s": round(time.monotonic() - start, 3), "code": e.code}


async def run_client(args):
    scenarios = {"echo": scenario_echo, "close": scenario_close, "idle": scenario_idle}
    try:
        result = await scenarios[args.scenario](args.url, args.timeout)
    except Exception as e:  # reported, not raised: the test prints the line
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    # Leave at once: no lingering close handshake on a connection the scenario gave up on.
    os._exit(0 if result.get("ok") else 1)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--cert")
    s.add_argument("--key")
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("scenario", choices=["echo", "close", "idle"])
    c.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    if args.mode == "server":
        asyncio.run(serve(args))
        return 0
    return asyncio.run(run_client(args))


if __name__ == "__main__":
    sys.exit(main())
