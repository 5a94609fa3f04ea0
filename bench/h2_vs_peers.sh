#!/usr/bin/env bash
# HTTP/2 downstream: Portico DP vs HAProxy vs nginx, side by side, in one run (issue 14). Needs root:
#
#   bench/h2_vs_peers.sh
#
# Installs what is missing (nginx, haproxy, h2load from nghttp2-client, python3; build dependencies
# through deploy/install-deps.sh), builds portico-cp, portico-dp and portico-echo in build-p
# (Release), then on loopback only:
#   - the upstream: portico-echo (HTTP/1.1 keep-alive, a small JSON answer describing the request);
#   - a real portico-cp and a portico-dp with 1 worker, configured through the Admin API: h2c by
#     prior knowledge on its cleartext listener, h2 (ALPN) on its TLS listener;
#   - nginx 1.22, 1 worker: `listen ... http2` (h2c by prior knowledge) and `listen ... ssl http2`;
#   - HAProxy 2.6, nbthread 1: `bind ... proto h2` and `bind ... ssl crt ... alpn h2,http/1.1`.
# Every proxy sends the upstream HTTP/1.1 over a keep-alive pool (nginx: keepalive 256; HAProxy:
# http-reuse always), strips the /bench/ prefix and adds the X-Forwarded-* / X-Real-IP headers and
# Via the DP adds. The TLS listeners serve the same ECDSA P-256 certificate (TLS 1.3).
# All proxies run on CPU $BENCH_PROXY_CPU, h2load and the upstream on CPU $BENCH_LOAD_CPU. Each round
# runs h2c then h2 (TLS) for portico, haproxy, nginx with identical settings:
#   h2load -c$BENCH_CONNECTIONS -m$BENCH_STREAMS -D $BENCH_DURATION --warm-up-time 1 (one stream per
#   request, GET /bench/small). req/s and failures come from h2load's summary, p50/p99 from its
#   per-request log (--log-file), the proxy's CPU time from /proc.
# With the default settings the whole run takes about 2 minutes. Every process started here is
# stopped by PID on exit.
#
# Environment (defaults): BENCH_DURATION (8: seconds measured per run) BENCH_ROUNDS (2)
#   BENCH_CONNECTIONS (10) BENCH_STREAMS (10) BENCH_PROXY_CPU (1) BENCH_LOAD_CPU (0)
#   BENCH_PROXIES ("portico haproxy nginx") BENCH_CASES ("h2c h2tls")
#   BENCH_OUT (build-p/bench-results/h2-<time>)
#   BENCH_SKIP_INSTALL=1, BENCH_SKIP_BUILD=1, BENCH_KEEP_WORK=1 (keep the temp dir with configs and
#   logs), BUILD_DIR (build-p), JOBS (2)
# A Portico build without HTTP/2 is reported and left out of the runs (the other proxies still run).
# Shared helpers (install, build, processes, ports, CP/DP start): bench/lib.sh.
set -euo pipefail
LOG_PREFIX=h2bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"  # ROOT, BUILD, PY, HELPER, log/die and the rest
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-2}
CONNS=${BENCH_CONNECTIONS:-10}
STREAMS=${BENCH_STREAMS:-10}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
LOAD_CPU=${BENCH_LOAD_CPU:-0}
PROXIES=${BENCH_PROXIES-portico haproxy nginx}
CASES=${BENCH_CASES-h2c h2tls}
OUT=${BENCH_OUT:-$BUILD/bench-results/h2-$(date +%Y%m%d-%H%M%S)}
H2HELPER="$ROOT/bench/h2_helper.py"

has_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }

# ---- install and build --------------------------------------------------------------------------
bench_install nginx:nginx haproxy:haproxy h2load:nghttp2-client /usr/bin/python3:python3 taskset:util-linux \
  openssl:openssl
bench_build portico-cp portico-dp portico-echo
CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
ECHO_BIN=$BUILD/tests/integration/portico-echo
for f in "$CP_BIN" "$DP_BIN" "$ECHO_BIN"; do [ -x "$f" ] || die "missing $f (build first)"; done

# ---- processes ----------------------------------------------------------------------------------
bench_workdir portico-h2bench

read -r UP_PORT DP_PORT DP_TLS_PORT DP_STATUS CP_ADMIN CP_CLUSTER NGX_PORT NGX_TLS_PORT HAP_PORT HAP_TLS_PORT \
  <<<"$(free_ports 10)"

# The certificate every TLS listener serves: ECDSA P-256, as Kong's default.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/tls.key" -out "$WORK/tls.crt" \
  -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >"$WORK/tls-gen.log" 2>&1 \
  || die "openssl req: $(cat "$WORK/tls-gen.log")"
cat "$WORK/tls.crt" "$WORK/tls.key" >"$WORK/tls.pem"  # HAProxy's crt: certificate and key in one file
chmod 644 "$WORK/tls.key" "$WORK/tls.pem"

# Upstream: portico-echo, HTTP/1.1 keep-alive.
taskset -c "$LOAD_CPU" "$ECHO_BIN" "$UP_PORT" >"$WORK/echo.log" 2>&1 &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
wait_http "http://127.0.0.1:$UP_PORT/small" 10 || die "portico-echo did not start: $(cat "$WORK/echo.log")"

# Portico: a CP and a 1-worker DP with both listeners.
gen_certs bench-dp
if has_proxy portico; then
  start_cp "$CP_BIN" "$WORK/portico.db" "$CP_ADMIN" "$CP_CLUSTER" "$WORK/cp.log"
  start_portico_dp "$DP_BIN" "$CP_CLUSTER" "$DP_PORT" "$DP_STATUS" "$WORK/dp.log" \
    --proxy-ssl-listen "127.0.0.1:$DP_TLS_PORT" --ssl-cert "$WORK/tls.crt" --ssl-cert-key "$WORK/tls.key"
  DP_PID=$STARTED
  wait_http "http://127.0.0.1:$CP_ADMIN/status" 30 || die "CP did not start: $(tail -n 20 "$WORK/cp.log")"
  admin_put "$CP_ADMIN" /services/bench "{\"url\":\"http://127.0.0.1:$UP_PORT\"}"
  admin_put "$CP_ADMIN" /routes/bench '{"paths":["/bench/"],"strip_path":true,"service":{"name":"bench"}}'
  wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP not ready: $(tail -n 20 "$WORK/dp.log")"
  wait_http "http://127.0.0.1:$DP_PORT/bench/small" 30 || die "DP does not serve /bench/: $(tail -n 20 "$WORK/dp.log")"
fi

# nginx: 1 worker, h2c (prior knowledge) and h2 over TLS, HTTP/1.1 keep-alive pool upstream.
NGXDIR=$WORK/nginx
mkdir -p "$NGXDIR"
cat >"$NGXDIR/nginx.conf" <<EOF
$(nginx_conf_head "$NGXDIR")
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  proxy_http_version 1.1;
  proxy_request_buffering off;
$(nginx_proxy_headers "2 nginx")
  upstream bench_upstream {
    server 127.0.0.1:$UP_PORT;
    keepalive 256;  # >= the 100 concurrent requests: no upstream connection churn
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$NGX_PORT http2 backlog=4096;
    listen 127.0.0.1:$NGX_TLS_PORT ssl http2 backlog=4096;
    ssl_certificate $WORK/tls.crt;
    ssl_certificate_key $WORK/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /bench/ { proxy_pass http://bench_upstream/; }
  }
}
EOF
if has_proxy nginx; then
  taskset -c "$PROXY_CPU" nginx -p "$NGXDIR" -e "$NGXDIR/error.log" -c "$NGXDIR/nginx.conf" >"$NGXDIR/stdout.log" 2>&1 &
  NGX_PID=$!; PIDS+=("$NGX_PID")
  NGX_WORKER=$(nginx_worker_pid "$NGX_PID") || die "nginx did not start: $(tail -n 5 "$NGXDIR/error.log")"
fi

# HAProxy: one process, one thread, h2c and h2 over TLS, HTTP/1.1 keep-alive upstream (reused by
# every client connection).
HAPDIR=$WORK/haproxy
mkdir -p "$HAPDIR"
cat >"$HAPDIR/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
  log stderr format raw local0 warning
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  log global
  option http-keep-alive
  timeout connect 5s
  timeout client 75s
  timeout server 60s
  timeout http-keep-alive 75s
frontend bench_h2c
  bind 127.0.0.1:$HAP_PORT proto h2
  http-request set-header X-Forwarded-Proto http
  default_backend bench_upstream
frontend bench_h2tls
  bind 127.0.0.1:$HAP_TLS_PORT ssl crt $WORK/tls.pem alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  default_backend bench_upstream
backend bench_upstream
  http-reuse always
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request replace-path /bench/(.*) /\1
  http-response add-header Via "2 haproxy"
  server up 127.0.0.1:$UP_PORT
EOF
if has_proxy haproxy; then
  haproxy -c -f "$HAPDIR/haproxy.cfg" >"$HAPDIR/check.log" 2>&1 || die "haproxy config: $(cat "$HAPDIR/check.log")"
  taskset -c "$PROXY_CPU" haproxy -db -f "$HAPDIR/haproxy.cfg" >"$HAPDIR/haproxy.log" 2>&1 &
  HAP_PID=$!; PIDS+=("$HAP_PID")
fi

# ---- checks: every proxy answers over HTTP/2 --------------------------------------------------------
# proxy_port PROXY CASE, proxy_pid PROXY: where each case connects and whose CPU time it reads.
proxy_port() {
  case "$1-$2" in
    portico-h2c) echo "$DP_PORT" ;; portico-h2tls) echo "$DP_TLS_PORT" ;;
    nginx-h2c) echo "$NGX_PORT" ;; nginx-h2tls) echo "$NGX_TLS_PORT" ;;
    haproxy-h2c) echo "$HAP_PORT" ;; haproxy-h2tls) echo "$HAP_TLS_PORT" ;;
    *) die "unknown proxy/case $1 $2" ;;
  esac
}
proxy_pid() {
  case "$1" in portico) echo "$DP_PID" ;; nginx) echo "$NGX_WORKER" ;; haproxy) echo "$HAP_PID" ;; esac
}
case_url() {  # case_url PROXY CASE
  local scheme=http
  [ "$2" = h2tls ] && scheme=https
  echo "$scheme://127.0.0.1:$(proxy_port "$1" "$2")/bench/small"
}
# check_h2 PROXY CASE: a GET over HTTP/2 answers 200 with the upstream's JSON (certificate verified).
check_h2() {
  local url got args=(--http2-prior-knowledge)
  url=$(case_url "$1" "$2")
  [ "$2" = h2tls ] && args=(--http2 --cacert "$WORK/tls.crt")
  for _ in $(seq 1 30); do
    got=$(curl -sS --max-time 5 -o "$WORK/check.body" -w '%{http_code} %{http_version}' "${args[@]}" "$url" 2>&1) || true
    [ "$got" = "200 2" ] && grep -q '"target":"/small"' "$WORK/check.body" && return 0
    sleep 0.1
  done
  log "$1 $2: $url answered '$got' ($(head -c 200 "$WORK/check.body" 2>/dev/null)), expected '200 2' and the upstream's echo of /small"
  return 1
}
RUNS=()  # "proxy case" pairs that passed their check
for proxy in $PROXIES; do
  for c in $CASES; do
    if check_h2 "$proxy" "$c"; then
      RUNS+=("$proxy $c")
    elif [ "$proxy" = portico ]; then
      log "portico $c: no HTTP/2 in this build? left out of the runs (dp log: $(tail -n 3 "$WORK/dp.log" | tr '\n' ' '))"
    else
      die "$proxy $c does not answer over HTTP/2"
    fi
  done
done
[ ${#RUNS[@]} -gt 0 ] || die "nothing to measure"
log "upstream :$UP_PORT  portico :$DP_PORT/:$DP_TLS_PORT  nginx :$NGX_PORT/:$NGX_TLS_PORT  haproxy :$HAP_PORT/:$HAP_TLS_PORT  results in $OUT"

# ---- h2load runs ------------------------------------------------------------------------------------
RESULTS=$OUT/results.tsv
echo "# case proxy round rps p50_us p99_us cpu_s requests failures errored timeout" >"$RESULTS"

run_h2load() {  # run_h2load PROXY CASE ROUND; appends one line to $RESULTS
  local proxy=$1 c=$2 round=$3 pid before after name=$2-$1-$3
  pid=$(proxy_pid "$proxy")
  before=$(cpu_ticks "$pid")
  # warm-up: connections opened and pools filled before the measured window.
  taskset -c "$LOAD_CPU" timeout $(( DURATION + 30 )) h2load -c"$CONNS" -m"$STREAMS" -D "$DURATION" --warm-up-time 1 \
    --log-file "$WORK/$name.log" "$(case_url "$proxy" "$c")" >"$OUT/h2load-$name.txt" 2>&1 \
    || die "h2load failed: $(tail -n 20 "$OUT/h2load-$name.txt")"
  after=$(cpu_ticks "$pid")
  alive "$ECHO_PID" || die "the upstream (portico-echo) died during $name: $(tail -n 3 "$WORK/echo.log")"
  # CPU time covers the warm-up second too: scaled to the measured window.
  "$PY" "$H2HELPER" result "$c" "$proxy" "$round" \
    "$(awk -v t=$(( after - before )) -v hz="$CLK_TCK" -v d="$DURATION" 'BEGIN { printf "%.2f", t / hz * d / (d + 1) }')" \
    "$OUT/h2load-$name.txt" "$WORK/$name.log" >>"$RESULTS" || die "no result for $name"
  rm -f "$WORK/$name.log"
  tail -n1 "$RESULTS" | awk '{ printf "  %-6s %-8s round %s: %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %5.2f s  failures %d\n", $1, $2, $3, $4, $5/1000, $6/1000, $7, $9 }' >&2
}

log "h2load -c$CONNS -m$STREAMS -D $DURATION --warm-up-time 1: $ROUNDS rounds x (${RUNS[*]/%/,})"
for round in $(seq 1 "$ROUNDS"); do
  for c in $CASES; do
    for run in "${RUNS[@]}"; do
      read -r proxy rc <<<"$run"
      [ "$rc" = "$c" ] && run_h2load "$proxy" "$c" "$round"
    done
  done
done

# ---- summary ----------------------------------------------------------------------------------------
{
  echo "## Run $(date -u +%Y-%m-%dT%H:%MZ): h2load -c$CONNS -m$STREAMS -D $DURATION --warm-up-time 1, GET /bench/small, $ROUNDS rounds interleaved, proxies on CPU $PROXY_CPU, h2load+upstream (portico-echo) on CPU $LOAD_CPU"
  echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); haproxy $(haproxy -v 2>/dev/null | awk 'NR==1 {print $3}'); $(h2load --version | head -n1); $(nproc) CPUs"
  echo
  "$PY" "$H2HELPER" summarize "$RESULTS"
} | tee "$OUT/summary.md"
log "done; raw results in $OUT"
