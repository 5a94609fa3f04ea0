#!/usr/bin/env python3
"""Helpers for bench/h2_vs_peers.sh (standard library only).

  result CASE PROXY ROUND CPU_S H2LOAD_OUTPUT H2LOAD_LOG
        one results line from an h2load run: req/s and failures from its output, latency p50/p99
        from its per-request log (--log-file: start time, status, microseconds until the end of
        the response), columns as in `summarize`
  summarize RESULTS_TSV
        medians per case and proxy, and the Portico/HAProxy and Portico/nginx ratios (Markdown)
"""
import re
import statistics
import sys

PROXIES = ("portico", "haproxy", "nginx")


def percentile(sorted_values, p):
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values))) - 1))
    return sorted_values[index]


def result(case, proxy, round_, cpu_s, output_path, log_path):
    text = open(output_path).read()
    rps = re.search(r"finished in [0-9.]+\w*, ([0-9.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not rps or not counts or not codes:
        print(f"h2load output not understood ({output_path}):\n{text}", file=sys.stderr)
        sys.exit(1)
    done, failed, errored, timeout = (int(counts.group(i)) for i in (3, 5, 6, 7))
    non2xx = sum(int(codes.group(i)) for i in (2, 3, 4))
    latencies = []
    for line in open(log_path):
        fields = line.split("\t")
        if len(fields) >= 3:
            latencies.append(int(fields[2]))
    latencies.sort()
    # h2load's "failed" already counts the errored and timed-out requests.
    failures = failed + non2xx
    print(f"{case} {proxy} {round_} {float(rps.group(1)):.1f} {percentile(latencies, 50)} "
          f"{percentile(latencies, 99)} {float(cpu_s):.2f} {done} {failures} {errored} {timeout}")


def summarize(path):
    # Columns: case proxy round rps p50_us p99_us cpu_s requests failures errored timeout
    rows = {}
    cases = []
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        case, proxy, _round, rps, p50, p99, cpu, requests, failures = line.split()[:9]
        if case not in cases:
            cases.append(case)
        rows.setdefault((case, proxy), []).append(
            (float(rps), int(p50), int(p99), float(cpu), int(requests), int(failures)))
    med = statistics.median
    # "core busy": the proxy's CPU time over the measured time; far below 100 % means the proxy was
    # not the bottleneck (h2load and the upstream, on the other CPU, were).
    print("| case | proxy | req/s (median) | spread | p50 ms | p99 ms | CPU µs/req | core busy | failures |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    medians = {}
    for case in cases:
        for proxy in PROXIES:
            r = rows.get((case, proxy))
            if not r:
                continue
            rps = [x[0] for x in r]
            spread = 0.0 if med(rps) == 0 else 50.0 * (max(rps) - min(rps)) / med(rps)
            cpu = [1e6 * x[3] / x[4] if x[4] else 0.0 for x in r]
            busy = [100.0 * x[3] / (x[4] / x[0]) if x[0] and x[4] else 0.0 for x in r]
            medians[(case, proxy)] = med(rps)
            print(f"| {case} | {proxy} | {med(rps):,.0f} | ±{spread:.1f}% | {med([x[1] for x in r]) / 1000:.2f} | "
                  f"{med([x[2] for x in r]) / 1000:.2f} | {med(cpu):.1f} | {med(busy):.0f} % | {sum(x[5] for x in r)} |")
    print()
    print("| case | req/s Portico/HAProxy | req/s Portico/nginx |")
    print("|---|---:|---:|")
    for case in cases:
        p = medians.get((case, "portico"))
        if p is None:
            continue
        h, n = medians.get((case, "haproxy")), medians.get((case, "nginx"))
        print(f"| {case} | {p / h if h else float('nan'):.2f} | {p / n if n else float('nan'):.2f} |")


def main(argv):
    if len(argv) >= 8 and argv[1] == "result":
        result(*argv[2:8])
    elif len(argv) == 3 and argv[1] == "summarize":
        summarize(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
