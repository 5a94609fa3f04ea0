#!/usr/bin/env python3
"""Helpers for bench/proxy_vs_nginx.sh (standard library only).

  free-ports N                      print N free loopback TCP ports
  load-routes ADMIN SERVICE COUNT   create COUNT routes r0..r{COUNT-1} with paths ["/r<i>/"] on SERVICE
  hold PORT COUNT PATH READY_FILE   open COUNT keep-alive connections, send one GET PATH on each,
                                    read each response, write "<ok> <failed>" to READY_FILE, then
                                    hold the connections until SIGTERM
  summarize RESULTS_TSV             medians, spread and Portico/nginx ratios as a Markdown table
"""
import http.client
import json
import signal
import socket
import statistics
import sys
import threading
import time


def free_ports(count):
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    print(" ".join(str(p) for p in ports))


def load_routes(admin, service, count, parallel=8):
    host, port = admin.rsplit(":", 1)
    failures = []
    next_index = [0]
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                i = next_index[0]
                if i >= count or failures:
                    return
                next_index[0] += 1
            body = json.dumps({"name": f"r{i}", "paths": [f"/r{i}/"], "strip_path": True})
            try:
                conn.request("POST", f"/services/{service}/routes", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                with lock:
                    failures.append(f"route r{i}: {e}")
                return
            if response.status != 201:
                with lock:
                    failures.append(f"route r{i}: HTTP {response.status} {text[:200]!r}")
                return

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print("load-routes failed: " + failures[0], file=sys.stderr)
        sys.exit(1)
    print(f"created {count} routes in {time.monotonic() - started:.1f} s")


def read_response(sock):
    """Reads one HTTP response with a Content-Length body; True when it was a 2xx."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 2")


def hold(port, count, path, ready_file):
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    connections, failed = [], 0
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            if read_response(s):
                connections.append(s)
            else:
                failed += 1
                s.close()
        except OSError:
            failed += 1
    with open(ready_file, "w") as f:
        f.write(f"{len(connections)} {failed}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def summarize(path):
    # Columns: case proxy round rps p50_us p99_us cpu_s requests errors
    rows = {}
    by_round = {}  # (case, proxy) -> {round: rps}
    errors = {}
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        case, proxy, round_, rps, p50, p99, cpu, requests, errs = line.split()[:9]
        by_round.setdefault((case, proxy), {})[round_] = float(rps)
        rows.setdefault((case, proxy), []).append(
            (float(rps), float(p50), float(p99), float(cpu), int(requests)))
        errors[(case, proxy)] = errors.get((case, proxy), 0) + int(errs)
    cases = []
    for case, _ in rows:
        if case not in cases:
            cases.append(case)

    def med(values):
        return statistics.median(values)

    def spread(values):
        m = med(values)
        return 0.0 if m == 0 else 100.0 * (max(values) - min(values)) / m

    # "core busy": the proxy's CPU time over the run's wall time; far below 100 % means the proxy
    # was not the bottleneck (load generator, upstream or other work on the machine was).
    print("| case | proxy | req/s (median) | spread | p50 ms | p99 ms | CPU µs/req | core busy | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    baseline_ratios = []  # portico against the baseline build (BENCH_BASELINE_BUILD), per case
    for case in cases:
        medians = {}
        for proxy in ("nginx", "portico", "baseline"):
            r = rows.get((case, proxy))
            if not r:
                continue
            rps = [x[0] for x in r]
            p50 = [x[1] for x in r]
            p99 = [x[2] for x in r]
            cpu_per_req = [1e6 * x[3] / x[4] if x[4] else 0.0 for x in r]
            busy = [100.0 * x[3] / (x[4] / x[0]) if x[0] and x[4] else 0.0 for x in r]
            medians[proxy] = (med(rps), med(p50), med(p99), med(cpu_per_req))
            print(f"| {case} | {proxy} | {med(rps):,.0f} | ±{spread(rps) / 2:.1f}% | "
                  f"{med(p50) / 1000:.2f} | {med(p99) / 1000:.2f} | {med(cpu_per_req):.1f} | "
                  f"{med(busy):.0f} % | {errors[(case, proxy)]} |")
        if "nginx" in medians and "portico" in medians:
            n, p = medians["nginx"], medians["portico"]
            # (latencies are 0 for cases without them, e.g. httpsresume: ratio 0 there)
            ratios.append((case, p[0] / n[0], p[1] / n[1] if n[1] else 0, p[2] / n[2] if n[2] else 0,
                           p[3] / n[3] if n[3] else 0))
        if "baseline" in medians and "portico" in medians:
            b, p = medians["baseline"], medians["portico"]
            baseline_ratios.append((case, p[0] / b[0], p[1] / b[1] if b[1] else 0, p[2] / b[2] if b[2] else 0,
                                    p[3] / b[3] if b[3] else 0))
    print()
    print("| case | req/s Portico/nginx | p50 Portico/nginx | p99 Portico/nginx | CPU/req Portico/nginx |")
    print("|---|---:|---:|---:|---:|")
    for case, rps, p50, p99, cpu in ratios:
        print(f"| {case} | {rps:.2f} | {p50:.2f} | {p99:.2f} | {cpu:.2f} |")
    if baseline_ratios:
        # Per round too: the baseline runs right after portico in every round.
        print()
        print("| case | req/s Portico/baseline | per round | p50 Portico/baseline | p99 Portico/baseline | CPU/req Portico/baseline |")
        print("|---|---:|---|---:|---:|---:|")
        for case, rps, p50, p99, cpu in baseline_ratios:
            new = by_round.get((case, "portico"), {})
            old = by_round.get((case, "baseline"), {})
            rounds = sorted(set(new) & set(old), key=lambda r: int(r))
            per_round = ", ".join(f"{new[r] / old[r]:.3f}" for r in rounds if old[r])
            print(f"| {case} | {rps:.3f} | {per_round} | {p50:.2f} | {p99:.2f} | {cpu:.2f} |")
    # Plugins: the same route shape with and without plugins, run back to back in every round.
    for name in ("plugins", "prometheus", "keyauth", "keyauth_rl", "keyauth_redis", "all", "bodyjson", "upstream3", "upstream3hc", "upstream1000"):
        if (name + "0", "portico") not in by_round or (name, "portico") not in by_round:
            continue
        none, some = by_round[(name + "0", "portico")], by_round[(name, "portico")]
        common = sorted(set(none) & set(some), key=lambda r: int(r))
        per_round = [some[r] / none[r] for r in common if none[r]]
        print()
        print(f"| Portico: {name} / no plugins | per round | median |")
        print("|---|---|---:|")
        print(f"| req/s | {', '.join(f'{x:.3f}' for x in per_round)} | {med(per_round):.3f} |")
    # 10,000 routes vs 1 route: from the interleaved routes1/routes10k runs (ratio per round,
    # both runs under the same load), else from the keepalive and routes10k medians.
    if any(case == "routes1" for case, _ in rows):
        print()
        print("| proxy | 1 route req/s (median) | 10,000 routes req/s (median) | 10,000 / 1 per round | median |")
        print("|---|---:|---:|---|---:|")
        for p in ("nginx", "portico"):
            one = {r: x for r, x in by_round.get(("routes1", p), {}).items()}
            many = {r: x for r, x in by_round.get(("routes10k", p), {}).items()}
            common = sorted(set(one) & set(many), key=lambda r: int(r))
            if not common:
                continue
            per_round = [many[r] / one[r] for r in common if one[r]]
            print(f"| {p} | {med(list(one.values())):,.0f} | {med(list(many.values())):,.0f} | "
                  f"{', '.join(f'{x:.2f}' for x in per_round)} | {med(per_round):.2f} |")
        return
    ka = {p: med([x[0] for x in rows[("keepalive", p)]]) for p in ("nginx", "portico")
          if ("keepalive", p) in rows}
    rt = {p: med([x[0] for x in rows[("routes10k", p)]]) for p in ("nginx", "portico")
          if ("routes10k", p) in rows}
    if ka and rt:
        print()
        print("| proxy | 10,000 routes / 1 route (req/s medians; runs minutes apart) |")
        print("|---|---:|")
        for p in ("nginx", "portico"):
            if p in ka and p in rt:
                print(f"| {p} | {rt[p] / ka[p]:.2f} |")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    command, args = argv[1], argv[2:]
    if command == "free-ports":
        free_ports(int(args[0]))
    elif command == "load-routes":
        load_routes(args[0], args[1], int(args[2]))
    elif command == "hold":
        hold(int(args[0]), int(args[1]), args[2], args[3])
    elif command == "summarize":
        summarize(args[0])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
