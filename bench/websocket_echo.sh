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
#   BENCH_KEEP_WORK=1 (keep the temp dir with configs and logs). Shared helpers: bench/lib.sh.
set -euo pipefail
LOG_PREFIX=ws-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"  # ROOT, BUILD, PY, HELPER, log/die, processes, ports, nginx, Portico
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-50}
SIZES=${BENCH_SIZES:-32 4096}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
LOAD_CPU=${BENCH_LOAD_CPU:-0}
OUT=${BENCH_OUT:-$BUILD/bench-results/ws-$(date +%Y%m%d-%H%M%S)}

CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
WS_BIN=$BUILD/bench/ws_echo_bench
for f in "$CP_BIN" "$DP_BIN" "$WS_BIN"; do [ -x "$f" ] || die "missing $f (ninja -C $BUILD portico-cp portico-dp ws_echo_bench)"; done
command -v nginx >/dev/null || die "nginx is not installed (apt-get install nginx)"

bench_workdir portico-ws-bench

read -r UP_PORT NGX_PORT DP_PORT DP_STATUS CP_ADMIN CP_CLUSTER <<<"$(free_ports 6)"

# Upstream echo server.
taskset -c "$LOAD_CPU" "$WS_BIN" server "$UP_PORT" >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 50); do grep -q listening "$WORK/upstream.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$WORK/upstream.log" || die "upstream did not start: $(cat "$WORK/upstream.log")"

# nginx, 1 worker, WebSocket proxying as nginx documents it.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
$(nginx_conf_head "$WORK/nginx")
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
NGX_WORKER=$(nginx_worker_pid "$NGX_PID") || die "nginx did not start: $(cat "$WORK/nginx/error.log")"

# Portico: CP and one DP worker.
gen_certs ws-bench
start_cp "$CP_BIN" "$WORK/portico.db" "$CP_ADMIN" "$CP_CLUSTER" "$WORK/cp.log"
start_portico_dp "$DP_BIN" "$CP_CLUSTER" "$DP_PORT" "$DP_STATUS" "$WORK/dp.log" --proxy-ssl-listen off; DP_PID=$STARTED
wait_http "http://127.0.0.1:$CP_ADMIN/status" 30 || die "CP did not start: $(tail -n 20 "$WORK/cp.log")"
admin_put "$CP_ADMIN" /services/wsbench "{\"url\":\"ws://127.0.0.1:$UP_PORT\"}"
admin_put "$CP_ADMIN" /routes/wsbench '{"paths":["/ws/"],"protocols":["ws"],"strip_path":true,"service":{"name":"wsbench"}}'
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
  cpu_us=$(awk -v t=$(( after - before )) -v hz="$CLK_TCK" -v m="$messages" 'BEGIN { printf "%.2f", (t * 1e6 / hz) / (m > 0 ? m : 1) }')
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
