#!/usr/bin/env python3
"""A tiny authoritative DNS server for the integration tests (Python 3 stdlib only).

usage: dns_server.py ZONE.json PORT_FILE

Listens on UDP 127.0.0.1 (ephemeral port, written to PORT_FILE once bound) and answers A, AAAA and
SRV questions from ZONE.json, which it re-reads on every question:

  {"ttl": 1,
   "names": {"app.dns.test": {"A": ["127.0.0.2"], "AAAA": [], "ttl": 1},
             "_http._tcp.svc.dns.test": {"SRV": [{"priority": 0, "weight": 10, "port": 8080,
                                                  "target": "app.dns.test"}]}}}

A name missing from "names" gets NXDOMAIN; a known name without records of the asked type gets an
empty NOERROR answer (NODATA). Every question is logged to stdout.
"""
import json
import socket
import struct
import sys


def read_name(data, offset):
    labels = []
    while True:
        length = data[offset]
        offset += 1
        if length == 0:
            break
        labels.append(data[offset:offset + length].decode("ascii", "replace"))
        offset += length
    return ".".join(labels), offset


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def answer(query, zone_path):
    (qid, flags, qdcount) = struct.unpack("!HHH", query[:6])
    name, offset = read_name(query, 12)
    qtype, _qclass = struct.unpack("!HH", query[offset:offset + 4])
    question = query[12:offset + 4]
    try:
        with open(zone_path) as f:
            zone = json.load(f)
    except (OSError, ValueError):
        zone = {"names": {}}
    names = {k.lower().rstrip("."): v for k, v in zone.get("names", {}).items()}
    entry = names.get(name.lower().rstrip("."))
    records = []
    rcode = 0
    if entry is None:
        rcode = 3  # NXDOMAIN
    else:
        ttl = int(entry.get("ttl", zone.get("ttl", 1)))
        rcode = int(entry.get("rcode", 0))
        if qtype == 1:
            for ip in entry.get("A", []):
                records.append((1, ttl, socket.inet_pton(socket.AF_INET, ip)))
        elif qtype == 28:
            for ip in entry.get("AAAA", []):
                records.append((28, ttl, socket.inet_pton(socket.AF_INET6, ip)))
        elif qtype == 33:
            for srv in entry.get("SRV", []):
                rdata = struct.pack("!HHH", srv.get("priority", 0), srv.get("weight", 1), srv["port"])
                records.append((33, ttl, rdata + encode_name(srv["target"])))
    rd = flags & 0x0100
    out_flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode  # QR, AA, RD (copied), RA
    header = struct.pack("!HHHHHH", qid, out_flags, 1, len(records), 0, 0)
    body = b""
    for rtype, ttl, rdata in records:
        body += struct.pack("!HHHIH", 0xC00C, rtype, 1, ttl, len(rdata)) + rdata
    print(f"question {name} type {qtype} -> rcode {rcode}, {len(records)} records", flush=True)
    return header + question + body


def main():
    zone_path, port_file = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(sock.getsockname()[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    while True:
        query, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(query, zone_path), peer)
        except Exception as e:  # a malformed question: no answer
            print(f"error: {e}", flush=True)


if __name__ == "__main__":
    main()
