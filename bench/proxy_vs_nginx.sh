#!/usr/bin/env bash
# Portico DP vs nginx, side by side, on the same machine (issue 5). One command, needs root:
#
#   bench/proxy_vs_nginx.sh
#
# Installs what is missing (nginx, wrk, python3, valgrind, linux-perf; build dependencies through
# deploy/install-deps.sh), builds portico-cp, portico-dp, portico-echo and the allocation counter
# in build-p (Release), then on loopback only:
#   - an upstream nginx (1 worker) serving /small (20 bytes), /1k, /64k and /post;
#   - a real portico-cp and a portico-dp with 1 worker, configured through the Admin API;
#   - an nginx reverse proxy with 1 worker, proxy_http_version 1.1 and an upstream keep-alive pool,
#     sending the same X-Forwarded-*/X-Real-IP headers and adding Via, like the DP.
# Both proxies run on CPU $BENCH_PROXY_CPU, wrk and the upstream on CPU $BENCH_LOAD_CPU. Every case
# runs nginx, portico, nginx, portico, ... for $BENCH_ROUNDS rounds with identical wrk settings
# (routes10k: a second CP + DP and a second nginx hold the 10,000 routes, and each round runs
# nginx 1 route, nginx 10k, portico 1 route, portico 10k, so the 10k/1 ratio compares runs made
# under the same load).
# Afterwards, for both proxies (keep-alive small response): RSS with $BENCH_IDLE_CONNECTIONS idle
# keep-alive clients, heap allocations per request (LD_PRELOAD counter, bench/malloc_count.c),
# system calls per request (perf tracepoints), a perf profile (perf stat instructions where the CPU
# exposes counters, cpu-clock samples otherwise) and user-space instructions per request under
# callgrind. Every process started here is stopped by PID on exit.
#
# Environment (defaults): BENCH_DURATION (5s) BENCH_ROUNDS (3) BENCH_CONNECTIONS (50)
#   BENCH_THREADS (1) BENCH_ROUTES (10000) BENCH_IDLE_CONNECTIONS (10000) BENCH_PROXY_CPU (1)
#   BENCH_LOAD_CPU (0) BENCH_CASES ("keepalive close body1k body64k post64k routes10k"; also
#   "plugins": one route without and one with ip-restriction + request-size-limiting, per round;
#   "keyauth": the same with key-auth and 1,000 consumers; "keyauth_rl": key-auth + rate-limiting;
#   "keyauth_redis": key-auth + rate-limiting with policy redis (a redis-server started here);
#   "upstream3": the same GET through an upstream of 3 targets (round-robin) against the service
#   pointing at one IP; nginx with an upstream block of the same 3 servers;
#   "upstream3hc": "upstream3" with health checks on (passive: 5 tcp failures, 5 timeouts, 5 http
#   failures; active http probes of /small every second), against the same service pointing at
#   one IP; nginx as in "upstream3" (its passive max_fails is on by default);
#   "upstream1000": the same through an upstream of 1,000 targets (127.1.x.y on the upstream's
#   port, all served by the upstream nginx) against the service pointing at one IP; nginx with an
#   upstream block of the same 1,000 servers;
#   "bodyjson": a 1 KiB JSON POST through request-transformer body operations (the body is read
#   whole, edited and re-encoded) against the same POST on the plain route; nginx proxies it
#   unchanged (it buffers request bodies by default);
#   "prometheus": the prometheus plugin with every metric family on (status codes, latencies,
#   bandwidth, per consumer, upstream health) on a second route, /obench/, against /bench/ without
#   it; nginx proxies /obench/ plainly (its stub_status has no per-route counters);
#   "all": correlation-id, cors, key-auth, ip-restriction, request-size-limiting, acl,
#   rate-limiting, request-transformer and response-transformer on one route;
#   "https": the keep-alive case over TLS (both proxies serve the same ECDSA P-256 certificate,
#   TLS 1.3, session tickets on); "httpsclose": a new TLS connection per request (a full TLS 1.3
#   handshake each, wrk -H "Connection: close"); "httpsresume": new connections resuming a session
#   (openssl s_time -reuse, $BENCH_STIME_CLIENTS processes, one request each; req/s = connections/s).
#   The CPU µs/req column is the proxy's CPU per request, handshake included.)
#   BENCH_STIME_CLIENTS (4)
#   BENCH_EXTRAS ("rss alloc perf callgrind"; empty to skip) BENCH_CALLGRIND_PATHS ("small 1k")
#   BENCH_OUT (build-p/bench-results/<time>)
#   BENCH_SKIP_INSTALL=1, BENCH_SKIP_BUILD=1, BENCH_KEEP_WORK=1 (keep the temp dir with configs
#   and logs), BUILD_DIR (build-p), JOBS (2)
#   BENCH_BASELINE_BUILD: a build dir of another checkout (e.g. the commit before a change, built
#   the same way): its portico-cp and portico-dp run as a third proxy, "baseline", in every round
#   of every wrk case (nginx, portico, baseline, ...), so old and new are measured in one run.
# Shared helpers (install, build, processes, ports, nginx, CP/DP start): bench/lib.sh.
set -euo pipefail
LOG_PREFIX=bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"  # ROOT, BUILD, PY, HELPER, log/die and the rest
DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-1}
ROUTES=${BENCH_ROUTES:-10000}
IDLE_CONNS=${BENCH_IDLE_CONNECTIONS:-10000}
PROXY_CPU=${BENCH_PROXY_CPU:-1}
LOAD_CPU=${BENCH_LOAD_CPU:-0}
CASES=${BENCH_CASES-keepalive close body1k body64k post64k routes10k}
EXTRAS=${BENCH_EXTRAS-rss alloc perf callgrind}
CALLGRIND_PATHS=${BENCH_CALLGRIND_PATHS-small 1k}
OUT=${BENCH_OUT:-$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)}

has_extra() { [[ " $EXTRAS " == *" $1 "* ]]; }

# ---- install and build --------------------------------------------------------------------------
bench_install nginx:nginx wrk:wrk /usr/bin/python3:python3 taskset:util-linux valgrind:valgrind perf:linux-perf \
  redis-server:redis-server
bench_build portico-cp portico-dp portico-echo portico_malloc_count
CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
MALLOC_SHIM=$BUILD/bench/libportico_malloc_count.so
for f in "$CP_BIN" "$DP_BIN" "$MALLOC_SHIM"; do [ -e "$f" ] || die "missing $f (build first)"; done

# ---- processes ----------------------------------------------------------------------------------
bench_workdir portico-bench
ulimit -n "$(ulimit -Hn)"  # 10,000 idle connections need the fds

read -r UP_PORT NGX_PORT NGX10K_PORT DP_PORT DP_STATUS CP_ADMIN CP_CLUSTER \
  DP10K_PORT DP10K_STATUS CP10K_ADMIN CP10K_CLUSTER DPB_PORT DPB_STATUS CPB_ADMIN CPB_CLUSTER REDIS_PORT \
  NGX_TLS_PORT DP_TLS_PORT <<<"$(free_ports 18)"

# The TLS cases' certificate, served by both proxies: ECDSA P-256, as Kong's default.
has_tls_case() { [[ " $CASES " == *" https"* ]]; }
if has_tls_case; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/tls.key" -out "$WORK/tls.crt" \
    -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >"$WORK/tls-gen.log" 2>&1 \
    || die "openssl req: $(cat "$WORK/tls-gen.log")"
  chmod 644 "$WORK/tls.key"  # read by nginx's master (root) only; the bench dir is private
fi

# Upstream: nginx, 1 worker, static answers; the POST body is read and discarded by nginx.
UPDIR=$WORK/upstream
mkdir -p "$UPDIR"
head -c 1024 /dev/zero | tr '\0' 'a' >"$UPDIR/1k"
head -c 65536 /dev/zero | tr '\0' 'b' >"$UPDIR/64k"
# The upstream1000 case's targets: 127.1.<i/256>.<i%256>, i = 1..1000.
upstream1000_addresses() { for i in $(seq 1 1000); do echo "127.1.$(( i / 256 )).$(( i % 256 ))"; done; }
upstream1000_listens() {
  [[ " $CASES " == *" upstream1000 "* ]] || return 0
  upstream1000_addresses | while read -r ip; do echo "    listen $ip:$UP_PORT backlog=64;"; done
}
cat >"$UPDIR/nginx.conf" <<EOF
$(nginx_conf_head "$UPDIR")
  sendfile on;
  tcp_nopush off;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_max_body_size 1m;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    listen 127.0.0.2:$UP_PORT backlog=4096;  # the upstream3 case's other two targets
    listen 127.0.0.3:$UP_PORT backlog=4096;
$(upstream1000_listens)
    location = /small { default_type text/plain; return 200 "hello from upstream\n"; }
    location = /1k { alias $UPDIR/1k; }
    location = /64k { alias $UPDIR/64k; }
    location = /post { default_type text/plain; return 200 "posted\n"; }
  }
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$UPDIR" -e "$UPDIR/error.log" -c "$UPDIR/nginx.conf" >"$UPDIR/stdout.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/small" 10 || die "upstream nginx did not start: $(tail -n 5 "$UPDIR/error.log")"

# nginx reverse proxy: 1 worker, HTTP/1.1 keep-alive pool, the same headers the DP adds.
# start_nginx_proxy DIR PORT ROUTE_COUNT [wrapper command...]: sets STARTED (the master pid) and
# adds it to PIDS. Not run in $(...), so the process stays our child and is reaped by stop_pid.
# NGINX_SINGLE_PROCESS=1: no master (master_process off), for valgrind; the request path is the same.
start_nginx_proxy() {
  local dir=$1 port=$2 routes=$3
  shift 3
  mkdir -p "$dir"
  {
    [ "${NGINX_SINGLE_PROCESS:-0}" = 1 ] && echo "master_process off;"
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile $(ulimit -Hn);
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $(( $(ulimit -Hn) - 100 )); }
http {
  access_log off;
  $(nginx_temp_paths "$dir")
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_max_body_size 1m;
  proxy_http_version 1.1;
  proxy_request_buffering off;
  proxy_buffer_size 8k;
  proxy_buffers 16 8k;
  proxy_busy_buffers_size 16k;
  proxy_max_temp_file_size 0;
$(nginx_proxy_headers "1.1 nginx")
  limit_req_zone \$http_apikey zone=bench_rl:1m rate=1000000r/s;
  upstream bench_upstream {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  upstream bench_upstream3 {
    server 127.0.0.1:$UP_PORT;
    server 127.0.0.2:$UP_PORT;
    server 127.0.0.3:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  upstream bench_upstream1000 {
$(upstream1000_addresses | while read -r ip; do echo "    server $ip:$UP_PORT;"; done)
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
$( [ -z "${NGINX_TLS_PORT:-}" ] || printf '    listen 127.0.0.1:%s ssl backlog=4096;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets on;\n' "$NGINX_TLS_PORT" "$WORK/tls.crt" "$WORK/tls.key")
    location /bench/ { proxy_pass http://bench_upstream/; }
    # The plugins case: what Portico's ip-restriction + request-size-limiting do, in nginx terms.
    location /pbench/ { allow 127.0.0.1; deny all; client_max_body_size 128m; proxy_pass http://bench_upstream/; }
    location /jbench/ { proxy_pass http://bench_upstream/; }
    location /obench/ { proxy_pass http://bench_upstream/; }
    location /ubench/ { proxy_pass http://bench_upstream3/; }
    location /mbench/ { proxy_pass http://bench_upstream1000/; }
    location /hbench/ { proxy_pass http://bench_upstream3/; }
    # The keyauth case: a key compared in nginx terms (no consumer lookup, no headers set).
    location /kbench/ { if (\$http_apikey != "bench-key-0123456789abcdef") { return 401; } proxy_pass http://bench_upstream/; }
    # The keyauth_rl case: the same plus a per-key request-rate limit nginx counts (never reached).
    location /rbench/ { if (\$http_apikey != "bench-key-0123456789abcdef") { return 401; } limit_req zone=bench_rl burst=1000000 nodelay; proxy_pass http://bench_upstream/; }
    # keyauth_redis: nginx has no shared counter store; the same local limit as /rbench/.
    location /xbench/ { if (\$http_apikey != "bench-key-0123456789abcdef") { return 401; } limit_req zone=bench_rl burst=1000000 nodelay; proxy_pass http://bench_upstream/; }
    # all: the key, the address, the rate limit, a header each way (CORS and correlation ids have no
    # nginx module). A location's proxy_set_header/add_header replace the inherited ones: repeated.
    location /abench/ { allow 127.0.0.1; deny all; if (\$http_apikey != "bench-key-0123456789abcdef") { return 401; } limit_req zone=bench_rl burst=1000000 nodelay; proxy_set_header Connection ""; proxy_set_header Host \$proxy_host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Bench yes; add_header Via "1.1 nginx" always; add_header X-Served-By portico; proxy_pass http://bench_upstream/; }
EOF
    if [ "$routes" -gt 1 ]; then
      for i in $(seq 0 $(( routes - 1 ))); do echo "    location /r$i/ { proxy_pass http://bench_upstream/; }"; done
    fi
    echo "  }"
    echo "}"
  } >"$dir/nginx.conf"
  taskset -c "$PROXY_CPU" "$@" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

NGINX_TLS_PORT=$(has_tls_case && echo "$NGX_TLS_PORT" || true) start_nginx_proxy "$WORK/nginx" "$NGX_PORT" 1; NGX_PID=$STARTED

# CP and DP.
gen_certs bench-dp
start_cp "$CP_BIN" "$WORK/portico.db" "$CP_ADMIN" "$CP_CLUSTER" "$WORK/cp.log"
DP_ARGS=(--control-plane "127.0.0.1:$CP_CLUSTER" --cluster-cert "$WORK/certs/dp.crt"
  --cluster-key "$WORK/certs/dp.key" --cluster-ca "$WORK/certs/ca.crt"
  --proxy-listen "127.0.0.1:$DP_PORT" --status-listen "127.0.0.1:$DP_STATUS" --workers 1 --log-level warn)
if has_tls_case; then
  DP_ARGS+=(--proxy-ssl-listen "127.0.0.1:$DP_TLS_PORT" --ssl-cert "$WORK/tls.crt" --ssl-cert-key "$WORK/tls.key")
else
  DP_ARGS+=(--proxy-ssl-listen off)
fi
start_dp() {  # start_dp LOG [wrapper...]: sets STARTED (the pid) and adds it to PIDS
  local logf=$1
  shift
  taskset -c "$PROXY_CPU" "$@" "$DP_BIN" "${DP_ARGS[@]}" >"$logf" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}
start_dp "$WORK/dp.log"; DP_PID=$STARTED

wait_http "http://127.0.0.1:$CP_ADMIN/status" 30 || die "CP did not start: $(tail -n 20 "$WORK/cp.log")"
admin_put "$CP_ADMIN" /services/bench "{\"url\":\"http://127.0.0.1:$UP_PORT\"}"
admin_put "$CP_ADMIN" /routes/bench '{"paths":["/bench/"],"strip_path":true,"service":{"name":"bench"}}'
wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP not ready: $(tail -n 20 "$WORK/dp.log")"
if [[ " $CASES " == *" plugins "* ]]; then
  # The same upstream behind a second route, /pbench/, with ip-restriction (allow 127.0.0.1) and
  # request-size-limiting (Kong's default 128 MB): both let every benchmark request through.
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/pbench" -H 'Content-Type: application/json' \
    -d '{"paths":["/pbench/"],"strip_path":true,"service":{"name":"bench"}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/pbench/plugins" -H 'Content-Type: application/json' \
    -d '{"name":"ip-restriction","config":{"allow":["127.0.0.1"]}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/pbench/plugins" -H 'Content-Type: application/json' \
    -d '{"name":"request-size-limiting"}'
  wait_http "http://127.0.0.1:$DP_PORT/pbench/small" 30 || die "DP does not serve /pbench/: $(tail -n 20 "$WORK/dp.log")"
fi
if [[ " $CASES " == *" prometheus "* ]]; then
  # The same upstream behind /obench/, with the prometheus plugin recording every family.
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/obench" -H 'Content-Type: application/json' \
    -d '{"paths":["/obench/"],"strip_path":true,"service":{"name":"bench"}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/obench/plugins" -H 'Content-Type: application/json' \
    -d '{"name":"prometheus","config":{"status_code_metrics":true,"latency_metrics":true,"bandwidth_metrics":true,"per_consumer":true,"upstream_health_metrics":true}}'
  wait_http "http://127.0.0.1:$DP_PORT/obench/small" 30 || die "DP does not serve /obench/: $(tail -n 20 "$WORK/dp.log")"
fi
if [[ " $CASES " == *" keyauth_redis "* ]]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/xbench" -H 'Content-Type: application/json' \
    -d '{"paths":["/xbench/"],"strip_path":true,"service":{"name":"bench"}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/xbench/plugins" -d name=key-auth
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/xbench/plugins" -H 'Content-Type: application/json' \
    -d "{\"name\":\"rate-limiting\",\"config\":{\"second\":1000000000,\"policy\":\"redis\",\"fault_tolerant\":false,\"redis\":{\"host\":\"127.0.0.1\",\"port\":$REDIS_PORT}}}"
fi
# balanced_route UPSTREAM ROUTE UPSTREAM_JSON: an upstream whose targets are the addresses read
# from stdin (on the upstream nginx's port), a service naming it, a route /ROUTE/ to it.
balanced_route() {
  local upstream=$1 route=$2 fields=$3
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/upstreams/$upstream" -H 'Content-Type: application/json' \
    -d "$fields"
  xargs -P 4 -I{} curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/upstreams/$upstream/targets" \
    -H 'Content-Type: application/json' -d "{\"target\":\"{}:$UP_PORT\"}"
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/services/$upstream" -H 'Content-Type: application/json' \
    -d "{\"host\":\"$upstream\",\"port\":80}"
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/$route" -H 'Content-Type: application/json' \
    -d "{\"paths\":[\"/$route/\"],\"strip_path\":true,\"service\":{\"name\":\"$upstream\"}}"
  wait_http "http://127.0.0.1:$DP_PORT/$route/small" 30 || die "DP does not serve /$route/: $(tail -n 20 "$WORK/dp.log")"
}
if [[ " $CASES " == *" upstream3 "* ]]; then
  printf '%s\n' 127.0.0.1 127.0.0.2 127.0.0.3 | balanced_route bench3 ubench '{}'
fi
if [[ " $CASES " == *" upstream3hc "* ]]; then
  printf '%s\n' 127.0.0.1 127.0.0.2 127.0.0.3 | balanced_route bench3hc hbench \
    '{"healthchecks":{"passive":{"unhealthy":{"tcp_failures":5,"timeouts":5,"http_failures":5}},"active":{"http_path":"/small","healthy":{"interval":1,"successes":2},"unhealthy":{"interval":1,"tcp_failures":2,"http_failures":2,"timeouts":2}}}}'
fi
if [[ " $CASES " == *" upstream1000 "* ]]; then
  upstream1000_addresses | balanced_route bench1000 mbench '{}'
fi
if [[ " $CASES " == *" bodyjson "* ]]; then
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/jbench" -H 'Content-Type: application/json' \
    -d '{"paths":["/jbench/"],"strip_path":true,"service":{"name":"bench"}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/jbench/plugins" -H 'Content-Type: application/json' \
    -d '{"name":"request-transformer","config":{"remove":{"body":["drop"]},"add":{"body":["added:yes"]}}}'
  wait_http "http://127.0.0.1:$DP_PORT/jbench/small" 30 || die "DP does not serve /jbench/: $(tail -n 20 "$WORK/dp.log")"
fi
if [[ " $CASES " == *" all "* ]]; then
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/abench" -H 'Content-Type: application/json' \
    -d '{"paths":["/abench/"],"strip_path":true,"service":{"name":"bench"}}'
  for plugin in '{"name":"correlation-id"}' '{"name":"cors","config":{"origins":["http://app.example"]}}' \
      '{"name":"key-auth"}' '{"name":"ip-restriction","config":{"allow":["127.0.0.1"]}}' \
      '{"name":"request-size-limiting"}' '{"name":"acl","config":{"allow":["bench"]}}' \
      '{"name":"rate-limiting","config":{"second":1000000000}}' \
      '{"name":"request-transformer","config":{"add":{"headers":["X-Bench:yes"]}}}' \
      '{"name":"response-transformer","config":{"add":{"headers":["X-Served-By:portico"]}}}'; do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/abench/plugins" -H 'Content-Type: application/json' -d "$plugin"
  done
fi
if [[ " $CASES " == *" keyauth "* || " $CASES " == *" keyauth_rl "* || " $CASES " == *" keyauth_redis "* || " $CASES " == *" all "* ]]; then
  # /kbench/ with key-auth, /rbench/ with key-auth + rate-limiting (local, per consumer, a limit
  # never reached); 1,000 consumers with a key each, so the lookup is not a one-entry map.
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/kbench" -H 'Content-Type: application/json' \
    -d '{"paths":["/kbench/"],"strip_path":true,"service":{"name":"bench"}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/kbench/plugins" -d name=key-auth
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/routes/rbench" -H 'Content-Type: application/json' \
    -d '{"paths":["/rbench/"],"strip_path":true,"service":{"name":"bench"}}'
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/rbench/plugins" -d name=key-auth
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/routes/rbench/plugins" -H 'Content-Type: application/json' \
    -d '{"name":"rate-limiting","config":{"second":1000000000,"limit_by":"consumer"}}'
  for i in $(seq 0 999); do
    curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$CP_ADMIN/consumers/c$i" -d "custom_id=id$i"
    key=bench-key-$i; [ "$i" = 0 ] && key=bench-key-0123456789abcdef
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/consumers/c$i/key-auth" -d "key=$key"
  done
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CP_ADMIN/consumers/c0/acls" -d group=bench
  wait_http_key() {
    for _ in $(seq 1 300); do
      curl -fsS -o /dev/null -H "apikey: bench-key-0123456789abcdef" "http://127.0.0.1:$DP_PORT/kbench/small" 2>/dev/null && return 0
      sleep 0.1
    done
    return 1
  }
  wait_http_key || die "DP does not serve /kbench/ with the key: $(tail -n 20 "$WORK/dp.log")"
fi


check_proxy() {  # check_proxy PORT PATH EXPECTED_BYTES [curl args]
  local port=$1 path=$2 want=$3 got
  shift 3
  got=$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' "$@" "http://127.0.0.1:$port$path")
  [ "$got" = "200 $want" ] || die "127.0.0.1:$port$path answered '$got', expected '200 $want'"
}
POST_BODY=$WORK/post64k.bin
head -c 65536 /dev/zero | tr '\0' 'p' >"$POST_BODY"
# The baseline: another checkout's CP + DP, configured the same way (BENCH_BASELINE_BUILD).
BASELINE=${BENCH_BASELINE_BUILD:-}
PROXY_PORTS=("$NGX_PORT" "$DP_PORT")
if [ -n "$BASELINE" ]; then
  for f in "$BASELINE/control_plane/portico-cp" "$BASELINE/data_plane/portico-dp"; do
    [ -x "$f" ] || die "BENCH_BASELINE_BUILD: missing $f"
  done
  start_cp "$BASELINE/control_plane/portico-cp" "$WORK/baseline.db" "$CPB_ADMIN" "$CPB_CLUSTER" "$WORK/cp-baseline.log"
  start_portico_dp "$BASELINE/data_plane/portico-dp" "$CPB_CLUSTER" "$DPB_PORT" "$DPB_STATUS" "$WORK/dp-baseline.log"
  DPB_PID=$STARTED
  wait_http "http://127.0.0.1:$CPB_ADMIN/status" 30 || die "baseline CP did not start: $(tail -n 20 "$WORK/cp-baseline.log")"
  admin_put "$CPB_ADMIN" /services/bench "{\"url\":\"http://127.0.0.1:$UP_PORT\"}"
  admin_put "$CPB_ADMIN" /routes/bench '{"paths":["/bench/"],"strip_path":true,"service":{"name":"bench"}}'
  wait_http "http://127.0.0.1:$DPB_STATUS/status/ready" 30 || die "baseline DP not ready: $(tail -n 20 "$WORK/dp-baseline.log")"
  PROXY_PORTS+=("$DPB_PORT")
fi
for port in "${PROXY_PORTS[@]}"; do
  for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/bench/small" 2>/dev/null && break; sleep 0.1; done
  check_proxy "$port" /bench/small 20
  check_proxy "$port" /bench/1k 1024
  check_proxy "$port" /bench/64k 65536
  check_proxy "$port" /bench/post 7 --data-binary "@$POST_BODY"
done
if has_tls_case; then
  for port in "$NGX_TLS_PORT" "$DP_TLS_PORT"; do
    for _ in $(seq 1 50); do curl -fsSk -o /dev/null "https://127.0.0.1:$port/bench/small" 2>/dev/null && break; sleep 0.1; done
    got=$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' --cacert "$WORK/tls.crt" "https://127.0.0.1:$port/bench/small")
    [ "$got" = "200 20" ] || die "https://127.0.0.1:$port/bench/small answered '$got', expected '200 20' (verified against the bench certificate)"
  done
fi
log "upstream :$UP_PORT  nginx :$NGX_PORT  portico-dp :$DP_PORT (cp admin :$CP_ADMIN)  results in $OUT"

# ---- wrk cases ----------------------------------------------------------------------------------
REPORT_LUA='done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end'
echo "$REPORT_LUA" >"$WORK/report.lua"
{ echo 'wrk.method = "POST"'
  echo 'wrk.body = string.rep("p", 65536)'
  echo 'wrk.headers["Content-Type"] = "application/octet-stream"'
  echo "$REPORT_LUA"; } >"$WORK/post.lua"
{ echo 'wrk.method = "POST"'
  # A JSON object of about 1 KiB: 31 members of 24-byte values, plus the member "drop".
  printf 'wrk.body = [[{"drop":"x"'
  for i in $(seq 10 40); do printf ',"field%d":"value-%s"' "$i" 0123456789abcdef; done
  echo "}]]"
  echo 'wrk.headers["Content-Type"] = "application/json"'
  echo "$REPORT_LUA"; } >"$WORK/jpost.lua"

RESULTS=$OUT/results.tsv
echo "# case proxy round rps p50_us p99_us cpu_s requests errors" >"$RESULTS"

run_wrk() {  # run_wrk CASE PROXY ROUND PORT CPU_PID; appends one line to $RESULTS
  local case=$1 proxy=$2 round=$3 port=$4 cpu_pid=$5 path script=$WORK/report.lua extra=() scheme=http
  case "$case" in
    keepalive) path=/bench/small ;;
    close) path=/bench/small; extra=(-H "Connection: close") ;;
    body1k) path=/bench/1k ;;
    body64k) path=/bench/64k ;;
    post64k) path=/bench/post; script=$WORK/post.lua ;;
    routes1) path=/bench/small ;;  # the 1-route runs interleaved with routes10k
    routes10k) path=/r$(( ROUTES / 2 ))/small ;;
    plugins0) path=/bench/small ;;   # the plugins case's runs without plugins
    plugins) path=/pbench/small ;;
    prometheus0) path=/bench/small ;;
    prometheus) path=/obench/small ;;
    keyauth0) path=/bench/small; extra=(-H "apikey: bench-key-0123456789abcdef") ;;
    keyauth) path=/kbench/small; extra=(-H "apikey: bench-key-0123456789abcdef") ;;
    keyauth_rl0) path=/bench/small; extra=(-H "apikey: bench-key-0123456789abcdef") ;;
    keyauth_rl) path=/rbench/small; extra=(-H "apikey: bench-key-0123456789abcdef") ;;
    keyauth_redis0) path=/bench/small; extra=(-H "apikey: bench-key-0123456789abcdef") ;;
    keyauth_redis) path=/xbench/small; extra=(-H "apikey: bench-key-0123456789abcdef") ;;
    all0) path=/bench/small; extra=(-H "apikey: bench-key-0123456789abcdef" -H "Origin: http://app.example") ;;
    all) path=/abench/small; extra=(-H "apikey: bench-key-0123456789abcdef" -H "Origin: http://app.example") ;;
    bodyjson0) path=/bench/post; script=$WORK/jpost.lua ;;
    upstream30) path=/bench/small ;;
    upstream3) path=/ubench/small ;;
    upstream10000) path=/bench/small ;;
    upstream1000) path=/mbench/small ;;
    upstream3hc0) path=/bench/small ;;
    upstream3hc) path=/hbench/small ;;
    bodyjson) path=/jbench/post; script=$WORK/jpost.lua ;;
    https) path=/bench/small; scheme=https ;;
    httpsclose) path=/bench/small; scheme=https; extra=(-H "Connection: close") ;;
    *) die "unknown case $case" ;;
  esac
  local before after out line
  before=$(cpu_ticks "$cpu_pid")
  out=$(taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "${extra[@]}" \
        "$scheme://127.0.0.1:$port$path" 2>&1) || die "wrk failed: $out"
  after=$(cpu_ticks "$cpu_pid")
  echo "$out" >>"$OUT/wrk-$case-$proxy.log"
  line=$(echo "$out" | grep '^RESULT ') || die "no RESULT from wrk: $out"
  local non2xx
  non2xx=$(echo "$out" | awk '/Non-2xx or 3xx responses/ {print $NF}')
  echo "$line" | awk -v c="$case" -v p="$proxy" -v r="$round" -v cpu=$(( after - before )) -v hz="$CLK_TCK" -v bad="${non2xx:-0}" \
    '{ rps = $2 / ($3 / 1e6); errs = $6 + $7 + $8 + $9 + $10 + bad;
       printf "%s %s %s %.1f %d %d %.2f %d %d\n", c, p, r, rps, $4, $5, cpu / hz, $2, errs }' >>"$RESULTS"
  tail -n1 "$RESULTS" | awk '{ printf "  %-9s %-7s round %s: %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %5.2f s  errors %d\n", $1, $2, $3, $4, $5/1000, $6/1000, $7, $9 }' >&2
}

# run_stime CASE PROXY ROUND PORT CPU_PID: $BENCH_STIME_CLIENTS `openssl s_time -reuse` clients in
# parallel (each: one full handshake, then new connections resuming its session, one GET each);
# appends one line to $RESULTS with connections/s as req/s (no latency figures).
STIME_CLIENTS=${BENCH_STIME_CLIENTS:-4}
run_stime() {
  local case=$1 proxy=$2 round=$3 port=$4 cpu_pid=$5 before after i total=0 seconds=${DURATION%s} pids=()
  before=$(cpu_ticks "$cpu_pid")
  for i in $(seq 1 "$STIME_CLIENTS"); do
    taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$port" -reuse -time "$seconds" -www /bench/small \
      >"$WORK/stime-$proxy-$i.log" 2>&1 & pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  after=$(cpu_ticks "$cpu_pid")
  for i in $(seq 1 "$STIME_CLIENTS"); do
    cat "$WORK/stime-$proxy-$i.log" >>"$OUT/stime-$case-$proxy.log"
    n=$(awk '/connections in .* real seconds/ {print $1}' "$WORK/stime-$proxy-$i.log" | tail -n1)
    [ -n "$n" ] || die "no result from openssl s_time: $(tail -n 5 "$WORK/stime-$proxy-$i.log")"
    total=$(( total + n ))
  done
  awk -v c="$case" -v p="$proxy" -v r="$round" -v n="$total" -v d="$seconds" -v cpu=$(( after - before )) -v hz="$CLK_TCK" \
    'BEGIN { printf "%s %s %s %.1f 0 0 %.2f %d 0\n", c, p, r, n / d, cpu / hz, n }' >>"$RESULTS"
  tail -n1 "$RESULTS" | awk '{ printf "  %-9s %-7s round %s: %9.0f conn/s  cpu %5.2f s\n", $1, $2, $3, $4, $7 }' >&2
}

NGX_WORKER=$(nginx_worker_pid "$NGX_PID") || die "no nginx worker"
run_tls_case() {  # run_tls_case CASE: nginx and portico on their TLS ports, same client settings
  log "case $1: $ROUNDS rounds x (nginx, portico) over TLS"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "https://127.0.0.1:$NGX_TLS_PORT/bench/small" >/dev/null 2>&1 || true
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "https://127.0.0.1:$DP_TLS_PORT/bench/small" >/dev/null 2>&1 || true
  for round in $(seq 1 "$ROUNDS"); do
    if [ "$1" = httpsresume ]; then
      run_stime "$1" nginx "$round" "$NGX_TLS_PORT" "$NGX_WORKER"
      run_stime "$1" portico "$round" "$DP_TLS_PORT" "$DP_PID"
    else
      run_wrk "$1" nginx "$round" "$NGX_TLS_PORT" "$NGX_WORKER"
      run_wrk "$1" portico "$round" "$DP_TLS_PORT" "$DP_PID"
    fi
  done
}
run_case() {  # run_case CASE NGINX_PORT NGINX_CPU_PID
  log "case $1: $ROUNDS rounds x (nginx, portico), wrk -t$THREADS -c$CONNS -d$DURATION"
  # warm both (pools, caches), not recorded
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$2/bench/small" >/dev/null 2>&1 || true
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$DP_PORT/bench/small" >/dev/null 2>&1 || true
  [ -z "$BASELINE" ] || taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$DPB_PORT/bench/small" >/dev/null 2>&1 || true
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk "$1" nginx "$round" "$2" "$3"
    run_wrk "$1" portico "$round" "$DP_PORT" "$DP_PID"
    [ -z "$BASELINE" ] || run_wrk "$1" baseline "$round" "$DPB_PORT" "$DPB_PID"
  done
}
run_plugins_case() {  # run_plugins_case CASE: each round portico without plugins (CASE0), with (CASE), nginx
  log "case $1: $ROUNDS rounds x (portico /bench/, portico with plugins, nginx with the equivalent), wrk -t$THREADS -c$CONNS -d$DURATION"
  local with=/pbench/small
  [ "$1" = keyauth ] && with=/kbench/small
  [ "$1" = keyauth_rl ] && with=/rbench/small
  [ "$1" = keyauth_redis ] && with=/xbench/small
  [ "$1" = all ] && with=/abench/small
  [ "$1" = prometheus ] && with=/obench/small
  [ "$1" = bodyjson ] && with=/jbench/small
  [ "$1" = upstream3 ] && with=/ubench/small
  [ "$1" = upstream1000 ] && with=/mbench/small
  [ "$1" = upstream3hc ] && with=/hbench/small
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -H "apikey: bench-key-0123456789abcdef" "http://127.0.0.1:$DP_PORT$with" >/dev/null 2>&1 || true
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -H "apikey: bench-key-0123456789abcdef" "http://127.0.0.1:$NGX_PORT$with" >/dev/null 2>&1 || true
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk "${1}0" portico "$round" "$DP_PORT" "$DP_PID"
    run_wrk "$1" portico "$round" "$DP_PORT" "$DP_PID"
    run_wrk "$1" nginx "$round" "$NGX_PORT" "$NGX_WORKER"
  done
}
for c in $CASES; do
  case "$c" in
    routes10k) ;;
    plugins|prometheus|keyauth|keyauth_rl|keyauth_redis|all|bodyjson|upstream3|upstream3hc|upstream1000) run_plugins_case "$c" ;;
    https|httpsclose|httpsresume) run_tls_case "$c" ;;
    *) run_case "$c" "$NGX_PORT" "$NGX_WORKER" ;;
  esac
done

# ---- RSS with idle keep-alive connections --------------------------------------------------------
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
if has_extra rss; then
  log "RSS with $IDLE_CONNS idle keep-alive client connections"
  echo "| proxy | RSS before (KiB) | RSS with $IDLE_CONNS idle connections (KiB) | per connection (bytes) | connections held |" >"$OUT/rss.md"
  echo "|---|---:|---:|---:|---:|" >>"$OUT/rss.md"
  for proxy in nginx portico; do
    if [ "$proxy" = nginx ]; then port=$NGX_PORT; pid=$NGX_WORKER; else port=$DP_PORT; pid=$DP_PID; fi
    before=$(rss_kib "$pid")
    rm -f "$WORK/hold.ready"
    taskset -c "$LOAD_CPU" "$PY" "$HELPER" hold "$port" "$IDLE_CONNS" /bench/small "$WORK/hold.ready" & hold_pid=$!; PIDS+=("$hold_pid")
    for _ in $(seq 1 1200); do [ -s "$WORK/hold.ready" ] && break; sleep 0.1; done
    sleep 1
    held=$(cat "$WORK/hold.ready" 2>/dev/null || echo "? ?")
    after=$(rss_kib "$pid")
    echo "| $proxy | $before | $after | $(( (after - before) * 1024 / IDLE_CONNS )) | ${held% *} ok, ${held#* } failed |" >>"$OUT/rss.md"
    stop_pid "$hold_pid"; forget_pid "$hold_pid"
    sleep 1
  done
  echo "(nginx: the worker process; its master holds another $(rss_kib "$NGX_PID") KiB. Portico: the whole portico-dp process.)" >>"$OUT/rss.md"
  cat "$OUT/rss.md" >&2
fi

# ---- allocations per request (LD_PRELOAD counter), keep-alive small response --------------------
count_line() { tail -n1 "$1" | sed 's/.*allocs=\([0-9]*\) frees=\([0-9]*\) bytes=\([0-9]*\)/\1 \2 \3/'; }
measure_allocs() {  # measure_allocs NAME PORT PID_TO_SIGNAL FILE [PATH [wrk args...]]
  local name=$1 port=$2 pid=$3 file=$4 path=${5:-/bench/small} a b c out requests
  shift 4; [ $# -gt 0 ] && shift
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s "$@" "http://127.0.0.1:$port$path" >/dev/null 2>&1
  sleep 0.5
  kill -s RTMIN+3 "$pid"; sleep 0.2; a=$(count_line "$file")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$WORK/report.lua" "$@" "http://127.0.0.1:$port$path" 2>&1)
  kill -s RTMIN+3 "$pid"; sleep 0.2; b=$(count_line "$file")
  sleep "${DURATION%s}"
  kill -s RTMIN+3 "$pid"; sleep 0.2; c=$(count_line "$file")
  requests=$(echo "$out" | awk '/^RESULT/ {print $2}')
  read -r a_allocs _ a_bytes <<<"$a"; read -r b_allocs _ b_bytes <<<"$b"; read -r c_allocs _ _ <<<"$c"
  awk -v n="$name" -v r="$requests" -v load=$(( b_allocs - a_allocs )) -v idle=$(( c_allocs - b_allocs )) \
      -v bytes=$(( b_bytes - a_bytes )) \
    'BEGIN { printf "| %s | %d | %d | %d | %.2f | %.0f |\n", n, r, load, idle, (load - idle) / r, bytes / r }' >>"$OUT/alloc.md"
}
if has_extra alloc; then
  log "allocations per request (LD_PRELOAD $MALLOC_SHIM)"
  echo "| proxy | requests | allocations during load | allocations idle, same time | allocations per request | bytes allocated per request |" >"$OUT/alloc.md"
  echo "|---|---:|---:|---:|---:|---:|" >>"$OUT/alloc.md"
  # nginx with the counter (its own instance on the same port layout as the main one).
  start_nginx_proxy "$WORK/nginx-alloc" "$NGX10K_PORT" 1 env LD_PRELOAD="$MALLOC_SHIM" MALLOC_COUNT_FILE="$WORK/nginx-alloc.count"
  ngx_alloc_pid=$STARTED
  wait_http "http://127.0.0.1:$NGX10K_PORT/bench/small" 10 || die "nginx (alloc) did not start"
  measure_allocs nginx "$NGX10K_PORT" "$(nginx_worker_pid "$ngx_alloc_pid")" "$WORK/nginx-alloc.count"
  stop_pid "$ngx_alloc_pid"; forget_pid "$ngx_alloc_pid"
  # portico-dp with the counter, replacing the main DP for the measurement.
  stop_pid "$DP_PID"; forget_pid "$DP_PID"
  start_dp "$WORK/dp-alloc.log" env LD_PRELOAD="$MALLOC_SHIM" MALLOC_COUNT_FILE="$WORK/dp-alloc.count"; dp_alloc_pid=$STARTED
  wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP (alloc) not ready"
  measure_allocs portico "$DP_PORT" "$dp_alloc_pid" "$WORK/dp-alloc.count"
  # The plugin routes of the cases that ran (key-auth + rate-limiting local; every plugin; redis).
  for c in keyauth_rl:/rbench/small all:/abench/small keyauth_redis:/xbench/small; do
    [[ " $CASES " == *" ${c%%:*} "* ]] || continue
    measure_allocs "portico ${c%%:*}" "$DP_PORT" "$dp_alloc_pid" "$WORK/dp-alloc.count" "${c#*:}" \
      -H "apikey: bench-key-0123456789abcdef" -H "Origin: http://app.example"
  done
  stop_pid "$dp_alloc_pid"; forget_pid "$dp_alloc_pid"
  start_dp "$WORK/dp.log"; DP_PID=$STARTED
  wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP did not come back"
  cat "$OUT/alloc.md" >&2
fi

# ---- perf: instructions per request (hardware counters) or a cpu-clock sampling profile ----------
perf_target() {  # sets port/pid for a proxy name
  if [ "$1" = nginx ]; then port=$NGX_PORT; pid=$NGX_WORKER; else port=$DP_PORT; pid=$DP_PID; fi
}
if has_extra perf; then
  # System calls per request (tracepoints; these work without hardware counters).
  SYSCALL_EVENTS=raw_syscalls:sys_enter
  for sc in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl accept4 close \
            shutdown setsockopt getsockopt getpeername getsockname connect socket sendfile64 ioctl; do
    SYSCALL_EVENTS+=",syscalls:sys_enter_$sc"
  done
  if perf stat -e "$SYSCALL_EVENTS" -- true >/dev/null 2>&1; then
    log "system calls per request (perf stat tracepoints)"
    echo "| case | proxy | requests | syscalls per request | by call (per request) |" >"$OUT/syscalls.md"
    echo "|---|---|---:|---:|---|" >>"$OUT/syscalls.md"
    for case in keepalive close body1k body64k; do
      for proxy in nginx portico; do
        perf_target "$proxy"
        extra=(); [ "$case" = close ] && extra=(-H "Connection: close")
        path=/bench/small; [ "$case" = body1k ] && path=/bench/1k; [ "$case" = body64k ] && path=/bench/64k
        perf stat -x, -e "$SYSCALL_EVENTS" -p "$pid" -o "$WORK/syscalls-$case-$proxy.csv" -- sleep "${DURATION%s}" & perf_pid=$!
        out=$(taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$WORK/report.lua" "${extra[@]}" "http://127.0.0.1:$port$path" 2>&1)
        wait "$perf_pid" || true
        requests=$(echo "$out" | awk '/^RESULT/ {print $2}')
        # perf's window and the wrk run have the same length and start together (within ms).
        awk -F, -v c="$case" -v n="$proxy" -v r="$requests" -v d="${DURATION%s}" '
          $1 ~ /^[0-9]+$/ { if ($3 == "raw_syscalls:sys_enter") total = $1; else { sub("syscalls:sys_enter_", "", $3); if ($1 > 0) v[$3] = $1 } }
          END { line = ""; for (k in v) line = line sprintf("%s %.2f, ", k, v[k] / r);
                printf "| %s | %s | %d | %.2f | %s |\n", c, n, r, total / r, substr(line, 1, length(line) - 2) }' \
          "$WORK/syscalls-$case-$proxy.csv" >>"$OUT/syscalls.md"
      done
    done
    cat "$OUT/syscalls.md" >&2
  fi
  if perf stat -x, -e instructions:u -- true 2>&1 | grep -q '^[0-9]'; then
    log "perf stat instructions per request (keep-alive small response)"
    echo "| proxy | requests | instructions (user) per request | instructions (user+kernel) per request | cycles per request |" >"$OUT/perf.md"
    echo "|---|---:|---:|---:|---:|" >>"$OUT/perf.md"
    for proxy in nginx portico; do
      perf_target "$proxy"
      perf stat -x, -e instructions:u,instructions,cycles -p "$pid" -o "$WORK/perf-$proxy.csv" -- sleep "${DURATION%s}" & perf_pid=$!
      out=$(taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$WORK/report.lua" "http://127.0.0.1:$port/bench/small" 2>&1)
      wait "$perf_pid" || true
      requests=$(echo "$out" | awk '/^RESULT/ {print $2}')
      awk -F, -v n="$proxy" -v r="$requests" '
        $3 == "instructions:u" { iu = $1 } $3 == "instructions" { ik = $1 } $3 == "cycles" { cy = $1 }
        END { printf "| %s | %d | %s | %s | %s |\n", n, r, (iu ~ /^[0-9]+$/ ? sprintf("%.0f", iu / r) : "n/a"),
              (ik ~ /^[0-9]+$/ ? sprintf("%.0f", ik / r) : "n/a"), (cy ~ /^[0-9]+$/ ? sprintf("%.0f", cy / r) : "n/a") }' \
        "$WORK/perf-$proxy.csv" >>"$OUT/perf.md"
    done
    cat "$OUT/perf.md" >&2
  else
    # No hardware counters (typical in a VM): sample on cpu-clock instead, user and kernel.
    log "perf: no hardware counters here; cpu-clock sampling profile (keep-alive small response)"
    echo "perf stat: hardware counters not supported on this machine; see perf-*.txt for cpu-clock profiles" >"$OUT/perf.md"
    for what in small 64k; do
      for proxy in nginx portico; do
        perf_target "$proxy"
        name=$proxy; [ "$what" = small ] || name=$proxy-$what
        perf record -q -e cpu-clock -F 1999 -p "$pid" -o "$WORK/perf-$name.data" -- sleep "${DURATION%s}" >/dev/null 2>&1 & perf_pid=$!
        taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/bench/$what" >/dev/null 2>&1
        wait "$perf_pid" || true
        { echo "## $name (/bench/$what): shares by binary (kernel = [kernel.kallsyms])"
          perf report -i "$WORK/perf-$name.data" --stdio --no-children --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' || true
          echo; echo "## $name: top symbols"
          perf report -i "$WORK/perf-$name.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//; s/   */  /g' || true
        } >"$OUT/perf-$name.txt"
        echo "perf cpu-clock profile of $name: $OUT/perf-$name.txt" >&2
      done
    done
  fi
fi

# ---- callgrind: user-space instructions per request, keep-alive small response -------------------
callgrind_case() {  # callgrind_case NAME PORT VALGRIND_PID OUT_FILE_PREFIX: one row per $CALLGRIND_PATHS
  local name=$1 port=$2 pid=$3 prefix=$4 out requests dump total what label
  taskset -c "$LOAD_CPU" wrk -t1 -c4 -d3s "http://127.0.0.1:$port/bench/small" >/dev/null 2>&1
  for what in $CALLGRIND_PATHS; do
    label=$name; [ "$what" = small ] || label=$name-$what
    callgrind_control -z "$pid" >/dev/null  # zero the counters: each dump covers one path
    callgrind_control -i on "$pid" >/dev/null
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c4 -d"$DURATION" -s "$WORK/report.lua" "http://127.0.0.1:$port/bench/$what" 2>&1)
    callgrind_control -i off "$pid" >/dev/null
    rm -f "$prefix".*
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    requests=$(echo "$out" | awk '/^RESULT/ {print $2}')
    dump=$(ls "$prefix".* 2>/dev/null | head -n1)
    [ -n "$dump" ] || die "callgrind wrote no dump for $label"
    callgrind_annotate --inclusive=no "$dump" >"$OUT/callgrind-$label-self.txt" 2>/dev/null || true
    callgrind_annotate --inclusive=yes "$dump" >"$OUT/callgrind-$label-inclusive.txt" 2>/dev/null || true
    callgrind_annotate --tree=caller "$dump" >"$OUT/callgrind-$label-callers.txt" 2>/dev/null || true
    total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$OUT/callgrind-$label-self.txt")
    echo "| $name | /bench/$what | $requests | $total | $(( total / requests )) |" >>"$OUT/callgrind.md"
  done
}
if has_extra callgrind; then
  log "callgrind: user-space instructions per request (keep-alive small response, wrk -c4)"
  echo "| proxy | path | requests | instructions (user space, whole process) | per request |" >"$OUT/callgrind.md"
  echo "|---|---|---:|---:|---:|" >>"$OUT/callgrind.md"
  NGINX_SINGLE_PROCESS=1 start_nginx_proxy "$WORK/nginx-callgrind" "$NGX10K_PORT" 1 \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out.nginx"
  cg_ngx_pid=$STARTED
  wait_http "http://127.0.0.1:$NGX10K_PORT/bench/small" 60 || die "nginx under callgrind did not start"
  callgrind_case nginx "$NGX10K_PORT" "$cg_ngx_pid" "$OUT/callgrind.out.nginx"
  stop_pid "$cg_ngx_pid"; forget_pid "$cg_ngx_pid"
  stop_pid "$DP_PID"; forget_pid "$DP_PID"
  start_dp "$WORK/dp-callgrind.log" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.out.portico"
  cg_pid=$STARTED
  wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 120 || die "DP under callgrind not ready"
  callgrind_case portico "$DP_PORT" "$cg_pid" "$OUT/callgrind.out.portico"
  stop_pid "$cg_pid"; forget_pid "$cg_pid"
  start_dp "$WORK/dp.log"; DP_PID=$STARTED
  wait_http "http://127.0.0.1:$DP_STATUS/status/ready" 30 || die "DP did not come back"
  cat "$OUT/callgrind.md" >&2
fi

# ---- 10,000 routes ----------------------------------------------------------------------------------
# A second CP + DP pair holds the 10,000 routes (plus /bench/), and a second nginx the 10,000
# locations, so that every round runs the 1-route and the 10,000-route proxies back to back:
# nginx 1, nginx 10k, portico 1, portico 10k. The 10k/1 ratio is taken per round (same load).
if [[ " $CASES " == *" routes10k "* ]]; then
  log "second CP + DP for $ROUTES routes"
  start_cp "$CP_BIN" "$WORK/portico10k.db" "$CP10K_ADMIN" "$CP10K_CLUSTER" "$WORK/cp10k.log"
  start_portico_dp "$DP_BIN" "$CP10K_CLUSTER" "$DP10K_PORT" "$DP10K_STATUS" "$WORK/dp10k.log" --proxy-ssl-listen off
  DP10K_PID=$STARTED
  wait_http "http://127.0.0.1:$CP10K_ADMIN/status" 30 || die "CP (10k) did not start: $(tail -n 20 "$WORK/cp10k.log")"
  admin_put "$CP10K_ADMIN" /services/bench "{\"url\":\"http://127.0.0.1:$UP_PORT\"}"
  admin_put "$CP10K_ADMIN" /routes/bench '{"paths":["/bench/"],"strip_path":true,"service":{"name":"bench"}}'
  log "creating $ROUTES routes through the Admin API"
  "$PY" "$HELPER" load-routes "127.0.0.1:$CP10K_ADMIN" bench "$ROUTES" >&2
  want=$(( ROUTES + 1 ))
  for _ in $(seq 1 600); do
    [ "$(curl -fsS "http://127.0.0.1:$DP10K_STATUS/status" 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["routes"])' 2>/dev/null)" = "$want" ] && break
    sleep 0.2
  done
  start_nginx_proxy "$WORK/nginx-10k" "$NGX10K_PORT" "$ROUTES"; NGX10K_PID=$STARTED
  wait_http "http://127.0.0.1:$NGX10K_PORT/bench/small" 30 || die "nginx with $ROUTES locations did not start"
  check_proxy "$NGX10K_PORT" "/r$(( ROUTES / 2 ))/small" 20
  check_proxy "$DP10K_PORT" "/r$(( ROUTES / 2 ))/small" 20
  NGX10K_WORKER=$(nginx_worker_pid "$NGX10K_PID") || die "no nginx (10k) worker"
  log "case routes1/routes10k: $ROUNDS rounds x (nginx 1, nginx 10k, portico 1, portico 10k), wrk -t$THREADS -c$CONNS -d$DURATION"
  for port in "$NGX_PORT" "$NGX10K_PORT" "$DP_PORT" "$DP10K_PORT"; do
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/bench/small" >/dev/null 2>&1 || true
  done
  for round in $(seq 1 "$ROUNDS"); do
    run_wrk routes1 nginx "$round" "$NGX_PORT" "$NGX_WORKER"
    run_wrk routes10k nginx "$round" "$NGX10K_PORT" "$NGX10K_WORKER"
    run_wrk routes1 portico "$round" "$DP_PORT" "$DP_PID"
    run_wrk routes10k portico "$round" "$DP10K_PORT" "$DP10K_PID"
  done
fi

# ---- summary ----------------------------------------------------------------------------------------
{
  echo "## Run $(date -u +%Y-%m-%dT%H:%MZ): wrk -t$THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds interleaved, proxy on CPU $PROXY_CPU, wrk+upstream on CPU $LOAD_CPU"
  echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); $(nproc) CPUs"
  echo
  "$PY" "$HELPER" summarize "$RESULTS"
  for f in rss alloc syscalls callgrind perf; do
    if [ -f "$OUT/$f.md" ]; then echo; cat "$OUT/$f.md"; fi
  done
} | tee "$OUT/summary.md"
log "done; raw results in $OUT"
