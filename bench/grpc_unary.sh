#!/usr/bin/env bash
# gRPC unary calls per second: Portico against nginx grpc_pass, same upstream, same run (issue 14).
# One command, needs root:
#
#   bench/grpc_unary.sh
#
# Builds portico-cp, portico-dp and bench/grpc_bench_upstream (a gRPC C++ echo server, callback
# generic API) in build-p (Release), then on loopback only:
#   - the echo upstream (h2c);
#   - a real portico-cp and a portico-dp with 1 worker: a service with protocol grpc and a route
#     with protocols grpc, configured through the Admin API;
#   - nginx with 1 worker: `listen ... http2`, `grpc_pass` to an upstream block with keepalive.
# Both proxies run on CPU $BENCH_PROXY_CPU; h2load and the upstream on CPU $BENCH_LOAD_CPU. Each
# round runs nginx, then portico, with the same h2load settings: h2c, $BENCH_CONNECTIONS
# connections x $BENCH_STREAMS concurrent streams, each request one gRPC message (a 5-byte frame
# header and 16 bytes) with content-type application/grpc and te: trailers. Before the runs a
# Python gRPC client (python3-grpcio) checks that a call through each proxy ends with status OK.
# Prints a Markdown table (median of the rounds; p50/p99 from h2load's per-request log) and keeps
# the raw output in $BENCH_OUT. Every process started here is stopped by PID on exit. About 1 min.
#
# Environment (defaults): BENCH_DURATION (5) seconds per run, BENCH_ROUNDS (3),
#   BENCH_CONNECTIONS (10), BENCH_STREAMS (10), BENCH_PROXY_CPU (1), BENCH_LOAD_CPU (0),
#   BENCH_SKIP_BUILD=1, BUILD_DIR (build-p), JOBS (2), BENCH_OUT (build-p/bench-results/grpc-<time>)
#   BENCH_KEEP_WORK=1 (keep the temp dir with configs and logs). Shared helpers: bench/lib.sh.
set -euo pipefail
LOG_PREFIX=grpc-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"  # ROOT, BUILD, PY, HELPER, log/die, build, processes, ports, Portico
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-10}
STREAMS=${BENCH_STREAMS:-10}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
LOAD_CPU=${BENCH_LOAD_CPU:-0}
OUT=${BENCH_OUT:-$BUILD/bench-results/grpc-$(date +%Y%m%d-%H%M%S)}

for tool in nginx h2load taskset curl; do command -v "$tool" >/dev/null || die "missing $tool (deploy/install-deps.sh, apt-get install nginx)"; done
bench_build portico-cp portico-dp grpc_bench_upstream
CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
UP_BIN=$BUILD/bench/grpc_bench_upstream
for f in "$CP_BIN" "$DP_BIN" "$UP_BIN"; do [ -x "$f" ] || die "missing $f (build first)"; done

# ---- processes (stopped by PID on exit) ----------------------------------------------------------
bench_workdir portico-grpc-bench

read -r UP_PORT NGX_PORT DP_PORT DP_STATUS CP_ADMIN CP_CLUSTER <<<"$(free_ports 6)"

taskset -c "$LOAD_CPU" "$UP_BIN" "$UP_PORT" >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
wait_port "$UP_PORT" 10 || die "the gRPC upstream did not start: $(cat "$WORK/upstream.log")"

NGX=$WORK/nginx
mkdir -p "$NGX"
cat >"$NGX/nginx.conf" <<EOF
$(nginx_conf_head "$NGX")
  keepalive_requests 1000000;
  http2_max_requests 1000000;
  upstream grpc_echo {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT http2 backlog=4096;
    location / {
      grpc_pass grpc://grpc_echo;
      grpc_set_header X-Real-IP \$remote_addr;
      grpc_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      grpc_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" >"$NGX/stdout.log" 2>&1 & NGX_PID=$!
PIDS+=("$NGX_PID")
wait_port "$NGX_PORT" 10 || die "nginx did not start: $(tail -n 5 "$NGX/error.log")"

gen_certs bench-dp
start_cp "$CP_BIN" "$WORK/portico.db" "$CP_ADMIN" "$CP_CLUSTER" "$WORK/cp.log"
start_portico_dp "$DP_BIN" "$CP_CLUSTER" "$DP_PORT" "$DP_STATUS" "$WORK/dp.log" --proxy-ssl-listen off; DP_PID=$STARTED
wait_http "http://127.0.0.1:$CP_ADMIN/status" 30 || die "CP did not start: $(tail -n 20 "$WORK/cp.log")"
admin_put "$CP_ADMIN" /services/grpc-echo "{\"protocol\":\"grpc\",\"host\":\"127.0.0.1\",\"port\":$UP_PORT}"
admin_put "$CP_ADMIN" /routes/grpc-echo '{"protocols":["grpc"],"paths":["/"],"strip_path":false,"service":{"name":"grpc-echo"}}'
wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP not ready: $(tail -n 20 "$WORK/dp.log")"

# A call through each proxy must end with gRPC status OK (h2load only sees HTTP 200).
for port in "$NGX_PORT" "$DP_PORT"; do
  ok=0
  for _ in $(seq 1 50); do
    if timeout 20 "$PY" "$ROOT/tests/integration/grpc_client.py" --target "127.0.0.1:$port" unary \
         >"$WORK/check-$port.json" 2>&1 && grep -q '"code": "OK"' "$WORK/check-$port.json"; then
      ok=1
      break
    fi
    sleep 0.2
  done
  [ "$ok" = 1 ] || die "a gRPC call through 127.0.0.1:$port failed: $(cat "$WORK/check-$port.json")"
done

# One unary request: the gRPC frame of a 16-byte message.
printf '\x00\x00\x00\x00\x10hello portico!!!' >"$WORK/request.bin"
cpu_pid_of() {  # the process doing the proxying: nginx's single worker, or the DP
  if [ "$1" = nginx ]; then pgrep -P "$NGX_PID" | head -n1; else echo "$DP_PID"; fi
}
RESULTS=$OUT/results.tsv
echo "# case proxy round rps p50_us p99_us cpu_s requests errors" >"$RESULTS"
run_h2load() {  # run_h2load PROXY ROUND PORT
  local proxy=$1 round=$2 port=$3 cpu_pid before after out requests failed rps p50 p99
  cpu_pid=$(cpu_pid_of "$proxy")
  before=$(cpu_ticks "$cpu_pid")
  rm -f "$WORK/h2load.log"
  out=$(taskset -c "$LOAD_CPU" h2load -c "$CONNS" -m "$STREAMS" -t 1 -D "$DURATION" --warm-up-time=1 \
        -d "$WORK/request.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        --log-file="$WORK/h2load.log" "http://127.0.0.1:$port/bench.Echo/Call" 2>&1) || die "h2load failed: $out"
  after=$(cpu_ticks "$cpu_pid")
  echo "$out" >>"$OUT/h2load-$proxy.log"
  requests=$(echo "$out" | awk '/^requests:/ {print $8}')   # succeeded
  failed=$(echo "$out" | awk '/^requests:/ {print $10 + $12 + $14}')
  rps=$(echo "$out" | awk '/^finished in/ {print $4}')
  # h2load's log: start_us status elapsed_us per request.
  read -r p50 p99 < <(awk '{print $3}' "$WORK/h2load.log" | sort -n |
                      awk '{v[NR]=$1} END {if (NR) print v[int(NR*0.5)+1], v[int(NR*0.99)+1]; else print 0, 0}')
  local non200
  non200=$(awk '$2 != 200' "$WORK/h2load.log" | wc -l)
  printf '%s %s %s %s %d %d %.2f %d %d\n' grpc_unary "$proxy" "$round" "$rps" "$p50" "$p99" \
    "$(awk -v t=$(( after - before )) -v hz="$CLK_TCK" 'BEGIN {print t / hz}')" "$requests" $(( failed + non200 )) >>"$RESULTS"
  tail -n1 "$RESULTS" | awk '{ printf "  %-7s round %s: %9.0f calls/s  p50 %6.2f ms  p99 %6.2f ms  cpu %5.2f s  errors %d\n", $2, $3, $4, $5/1000, $6/1000, $7, $9 }' >&2
}

log "h2load: $CONNS connections x $STREAMS streams, ${DURATION}s per run, $ROUNDS rounds; proxies on CPU $PROXY_CPU"
for round in $(seq 1 "$ROUNDS"); do
  run_h2load nginx "$round" "$NGX_PORT"
  run_h2load portico "$round" "$DP_PORT"
done
"$PY" "$HELPER" summarize "$RESULTS" | tee "$OUT/summary.md"
log "results in $OUT"
