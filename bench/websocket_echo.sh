#!/usr/bin/env bash
# WebSocket echo through Portico vs nginx, same run, same pinning (issue 14). Needs root for
# nothing but the nginx install; everything runs on loopback:
#
#   bench/websocket_echo.sh
#
#   - upstream: bench/ws_echo_bench.cc's echo server (one epoll thread) on CPU $BENCH_LOAD_CPU;
#   - nginx: 1 worker, `location /ws/` proxying WebSocket the documented way (proxy_http_version
#     1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade");
#   - Portico: a portico-cp and a portico-dp with 1 worker, a service to the same upstream and a
#     route /ws/ with protocols ["ws"];
#   - load: ws_echo_bench client, $BENCH_CONNECTIONS connections, each sending one binary message
#     and waiting for its echo before the next, for $BENCH_DURATION seconds, on CPU $BENCH_LOAD_CPU.
# Both proxies run on CPU $BENCH_PROXY_CPU; each round runs nginx then portico with identical
# settings, for every message size in $BENCH_SIZES. Besides messages/s and latency, the proxy's
# CPU time per message (utime+stime of the nginx worker / the DP process over the run) is
# reported: on a 2-core machine the load side (client and upstream on one core) can be the limit,
# and the CPU per message still compares the two proxies. Every process started here is stopped by
# PID on exit. Bounded: about (2 x rounds x sizes x duration) + 10 s.
#
# Environment (defaults): BENCH_DURATION (5) BENCH_ROUNDS (3) BENCH_CONNECTIONS (50)
#   BENCH_SIZES ("32 4096") BENCH_PROXY_CPU (1) BENCH_LOAD_CPU (0) BUILD_DIR (build-p: a Release
#   build; it must hold portico-cp, portico-dp and bench/ws_echo_bench, built with
#   `ninja -C build-p portico-cp portico-dp ws_echo_bench`) BENCH_OUT (BUILD_DIR/bench-results/ws-<time>)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-p}
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-50}
SIZES=${BENCH_SIZES:-32 4096}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
LOAD_CPU=${BENCH_LOAD_CPU:-0}
OUT=${BENCH_OUT:-$BUILD/bench-results/ws-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
HELPER="$ROOT/bench/bench_helper.py"

log() { printf '[ws-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
WS_BIN=$BUILD/bench/ws_echo_bench
for f in "$CP_BIN" "$DP_BIN" "$WS_BIN"; do [ -x "$f" ] || die "missing $f (ninja -C $BUILD portico-cp portico-dp ws_echo_bench)"; done
command -v nginx >/dev/null || die "nginx is not installed (apt-get install nginx)"

WORK=$(mktemp -d /tmp/portico-ws-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$OUT"
PIDS=()
alive() { [ -e "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
stop_pid() {  # TERM, wait up to 5 s, then KILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r UP_PORT NGX_PORT DP_PORT DP_STATUS CP_ADMIN CP_CLUSTER <<<"$($PY "$HELPER" free-ports 6)"
wait_http() {  # wait_http URL SECONDS
  for _ in $(seq 1 $(( $2 * 10 ))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
TICKS=$(getconf CLK_TCK)

# Upstream echo server.
taskset -c "$LOAD_CPU" "$WS_BIN" server "$UP_PORT" >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 50); do grep -q listening "$WORK/upstream.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$WORK/upstream.log" || die "upstream did not start: $(cat "$WORK/upstream.log")"

# nginx, 1 worker, WebSocket proxying as nginx documents it.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/client_body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$NGX_PORT backlog=4096;
    location /ws/ {
      proxy_pass http://127.0.0.1:$UP_PORT/;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_read_timeout 60s;
    }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
  >"$WORK/nginx/stdout.log" 2>&1 & NGX_PID=$!; PIDS+=("$NGX_PID")
NGX_WORKER=""
for _ in $(seq 1 50); do NGX_WORKER=$(pgrep -P "$NGX_PID" | head -n1 || true); [ -n "$NGX_WORKER" ] && break; sleep 0.1; done
[ -n "$NGX_WORKER" ] || die "nginx did not start: $(cat "$WORK/nginx/error.log")"

# Portico: CP and one DP worker.
"$CP_BIN" gen-certs "$WORK/certs" --dp-id ws-bench >"$WORK/gen-certs.log" 2>&1 || die "gen-certs: $(cat "$WORK/gen-certs.log")"
taskset -c "$LOAD_CPU" "$CP_BIN" --db "$WORK/portico.db" --admin-listen "127.0.0.1:$CP_ADMIN" \
  --cluster-listen "127.0.0.1:$CP_CLUSTER" --cluster-cert "$WORK/certs/cp.crt" \
  --cluster-key "$WORK/certs/cp.key" --cluster-ca "$WORK/certs/ca.crt" --log-level warn \
  >"$WORK/cp.log" 2>&1 & PIDS+=($!)
taskset -c "$PROXY_CPU" "$DP_BIN" --control-plane "127.0.0.1:$CP_CLUSTER" --cluster-cert "$WORK/certs/dp.crt" \
  --cluster-key "$WORK/certs/dp.key" --cluster-ca "$WORK/certs/ca.crt" --proxy-listen "127.0.0.1:$DP_PORT" \
  --proxy-ssl-listen off --status-listen "127.0.0.1:$DP_STATUS" --workers 1 --log-level warn \
  >"$WORK/dp.log" 2>&1 & DP_PID=$!; PIDS+=("$DP_PID")
wait_http "http://127.0.0.1:$CP_ADMIN/status" 30 || die "CP did not start: $(tail -n 20 "$WORK/cp.log")"
curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/services/wsbench" -H 'Content-Type: application/json' \
  -d "{\"url\":\"ws://127.0.0.1:$UP_PORT\"}"
curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/wsbench" -H 'Content-Type: application/json' \
  -d '{"paths":["/ws/"],"protocols":["ws"],"strip_path":true,"service":{"name":"wsbench"}}'
wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP not ready: $(tail -n 20 "$WORK/dp.log")"

# run_case NAME PORT PID SIZE ROUND: one load run; appends a line to results.tsv.
RESULTS=$OUT/results.tsv
printf 'proxy\tsize\tround\tmessages_per_s\tp50_us\tp99_us\tproxy_cpu_us_per_msg\terrors\n' >"$RESULTS"
run_case() {
  local name=$1 port=$2 pid=$3 size=$4 round=$5 before after line
  before=$(cpu_ticks "$pid")
  line=$(taskset -c "$LOAD_CPU" timeout $(( DURATION + 30 )) "$WS_BIN" client "$port" /ws/ "$CONNS" "$DURATION" "$size") \
    || die "$name size $size: $line"
  after=$(cpu_ticks "$pid")
  local messages rate p50 p99 errors
  messages=$(sed -E 's/.*messages=([0-9]+).*/\1/' <<<"$line")
  rate=$(sed -E 's/.*rate=([0-9]+).*/\1/' <<<"$line")
  p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
  local cpu_us
  cpu_us=$(awk -v t=$(( after - before )) -v hz="$TICKS" -v m="$messages" 'BEGIN { printf "%.2f", (t * 1e6 / hz) / (m > 0 ? m : 1) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$size" "$round" "$rate" "$p50" "$p99" "$cpu_us" "$errors" >>"$RESULTS"
  log "$name size=$size round=$round: $rate msg/s, p50 ${p50} us, p99 ${p99} us, proxy CPU ${cpu_us} us/msg"
}

# A short warm-up of each, then the rounds.
"$WS_BIN" client "$NGX_PORT" /ws/ 4 1 32 >/dev/null || die "nginx warm-up failed"
"$WS_BIN" client "$DP_PORT" /ws/ 4 1 32 >/dev/null || die "portico warm-up failed"
for size in $SIZES; do
  for round in $(seq 1 "$ROUNDS"); do
    run_case nginx "$NGX_PORT" "$NGX_WORKER" "$size" "$round"
    run_case portico "$DP_PORT" "$DP_PID" "$size" "$round"
  done
done

# Medians per proxy and size, and the Portico/nginx ratio.
{
  echo "| size (bytes) | proxy | messages/s (median) | p50 µs | p99 µs | proxy CPU µs/msg |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for size in $SIZES; do
    for name in nginx portico; do
      awk -F'\t' -v n="$name" -v s="$size" '
        $1 == n && $2 == s { r[++k] = $4; a[k] = $5; b[k] = $6; c[k] = $7 }
        function median(x, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                           return x[int((k + 1) / 2)] }
        END { printf "| %s | %s | %d | %d | %d | %.2f |\n", s, n, median(r, k), median(a, k), median(b, k), median(c, k) }' "$RESULTS"
    done
  done
} | tee "$OUT/summary.md"
log "results in $OUT"
