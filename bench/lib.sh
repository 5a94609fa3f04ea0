# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts (proxy_vs_nginx.sh, h2_vs_peers.sh, grpc_unary.sh,
# websocket_echo.sh, declarative_100k.sh). Sourced, not run:
#
#   LOG_PREFIX=bench                            # the [prefix HH:MM:SS] of every log line
#   . "$(dirname "$0")/lib.sh"                  # sets ROOT, BUILD (BUILD_DIR or build-p), PY, HELPER
#   bench_install nginx:nginx h2load:nghttp2-client /usr/bin/python3:python3 ...  # BENCH_SKIP_INSTALL
#   bench_build portico-cp portico-dp ...       # Release build in $BUILD; BENCH_SKIP_BUILD, JOBS
#   bench_workdir portico-bench                 # WORK=/tmp/portico-bench.XXXXXX, $OUT, PIDS, traps
#
# Every process a script starts goes into PIDS and is stopped by PID on exit (BENCH_KEEP_WORK=1
# keeps the work dir). The sourcing script sets `set -euo pipefail` itself.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-p}
PY=/usr/bin/python3
HELPER="$ROOT/bench/bench_helper.py"

log() { printf '[%s %s] %s\n' "${LOG_PREFIX:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---- install and build --------------------------------------------------------------------------
# bench_install TOOL:PACKAGE...: unless BENCH_SKIP_INSTALL=1, the build dependencies
# (deploy/install-deps.sh), then apt-get install of the PACKAGE of every TOOL that is missing (a TOOL
# starting with / is a path that must be executable, any other a command on PATH).
bench_install() {
  [ "${BENCH_SKIP_INSTALL:-0}" != 1 ] || return 0
  bash "$ROOT/deploy/install-deps.sh"
  local missing=() spec tool
  for spec in "$@"; do
    tool=${spec%%:*}
    if [[ $tool == /* ]]; then
      [ -x "$tool" ] || missing+=("${spec#*:}")
    else
      command -v "$tool" >/dev/null || missing+=("${spec#*:}")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    local SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # RUNLEVEL=1: the packages must not start the system nginx/haproxy services; we run our own.
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# bench_build TARGET...: unless BENCH_SKIP_BUILD=1, configure $BUILD (Ninja, Release) if it is not
# yet and build the targets with JOBS (2) jobs.
bench_build() {
  [ "${BENCH_SKIP_BUILD:-0}" != 1 ] || return 0
  if [ ! -f "$BUILD/build.ninja" ]; then
    # -g only adds symbols for the profiles; the code is the same as a plain Release build.
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-g -DCMAKE_CXX_FLAGS=-g
  fi
  ninja -C "$BUILD" -j "${JOBS:-2}" "$@"
}

# ---- processes ----------------------------------------------------------------------------------
# bench_workdir PREFIX: WORK (a new /tmp/PREFIX.XXXXXX), $OUT created, PIDS empty, and the traps that
# stop every pid in PIDS on exit and remove WORK (kept with BENCH_KEEP_WORK=1).
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$WORK"  # nginx workers run as an unprivileged user and read files in it
  mkdir -p "$OUT"
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
alive() { [ -e "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
stop_pid() {  # stop_pid PID: TERM, wait up to 5 s, then KILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
forget_pid() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
cleanup() {
  trap - EXIT INT TERM
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}

free_ports() { "$PY" "$HELPER" free-ports "$1"; }  # free_ports N: N free loopback ports, one line
wait_http() {  # wait_http URL SECONDS [curl args]
  local url=$1 seconds=$2
  shift 2
  for _ in $(seq 1 $(( seconds * 10 ))); do curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
wait_port() {  # wait_port PORT SECONDS
  for _ in $(seq 1 $(( $2 * 10 ))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of the whole process
# shellcheck disable=SC2034  # CLK_TCK: read by the sourcing scripts
CLK_TCK=$(getconf CLK_TCK)

# ---- nginx --------------------------------------------------------------------------------------
nginx_temp_paths() {  # nginx_temp_paths DIR: the http-level *_temp_path lines, all under DIR
  local d=$1
  echo "client_body_temp_path $d/client_body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;"
  echo "uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;"
}
# nginx_conf_head DIR: the start of a 1-worker, foreground nginx.conf whose pid, logs and temp files
# are under DIR, up to and including the first lines of the http block (the caller closes it).
nginx_conf_head() {
  local d=$1
  echo "worker_processes 1;"
  echo "daemon off;"
  echo "pid $d/nginx.pid;"
  echo "error_log $d/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log off;"
  nginx_temp_paths "$d" | sed 's/^/  /'
}
# nginx_proxy_headers VIA: http-level lines for an upstream keep-alive pool that send the headers the
# DP sends (Host, X-Real-IP, X-Forwarded-*) and add Via: VIA to every response, as the DP does.
nginx_proxy_headers() {
  echo '  proxy_set_header Connection "";'
  echo '  proxy_set_header Host $proxy_host;'
  echo '  proxy_set_header X-Real-IP $remote_addr;'
  echo '  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;'
  echo '  proxy_set_header X-Forwarded-Proto $scheme;'
  echo '  proxy_set_header X-Forwarded-Host $host;'
  echo '  proxy_set_header X-Forwarded-Port $server_port;'
  echo "  add_header Via \"$1\" always;"
}
nginx_worker_pid() {  # nginx_worker_pid MASTER: the (single) worker of an nginx master, waiting up to 5 s
  local w
  for _ in $(seq 1 50); do
    w=$(pgrep -P "$1" | head -n1 || true)
    [ -n "$w" ] && { echo "$w"; return 0; }
    sleep 0.1
  done
  return 1
}

# ---- Portico ------------------------------------------------------------------------------------
gen_certs() {  # gen_certs DP_ID: the cluster mTLS certificates in $WORK/certs ($CP_BIN gen-certs)
  "$CP_BIN" gen-certs "$WORK/certs" --dp-id "$1" >"$WORK/gen-certs.log" 2>&1 || die "gen-certs: $(cat "$WORK/gen-certs.log")"
}
# start_cp CP_BINARY DB ADMIN_PORT CLUSTER_PORT LOG: a portico-cp on CPU $LOAD_CPU with the
# certificates of gen_certs; adds its pid to PIDS.
start_cp() {
  taskset -c "$LOAD_CPU" "$1" --db "$2" --admin-listen "127.0.0.1:$3" \
    --cluster-listen "127.0.0.1:$4" --cluster-cert "$WORK/certs/cp.crt" \
    --cluster-key "$WORK/certs/cp.key" --cluster-ca "$WORK/certs/ca.crt" --log-level warn \
    >"$5" 2>&1 & PIDS+=($!)
}
# start_portico_dp DP_BINARY CLUSTER_PORT PROXY_PORT STATUS_PORT LOG [DP args...]: a 1-worker
# portico-dp on CPU $PROXY_CPU; sets STARTED (the pid) and adds it to PIDS.
start_portico_dp() {
  local bin=$1 cluster=$2 port=$3 status=$4 logf=$5
  shift 5
  taskset -c "$PROXY_CPU" "$bin" --control-plane "127.0.0.1:$cluster" --cluster-cert "$WORK/certs/dp.crt" \
    --cluster-key "$WORK/certs/dp.key" --cluster-ca "$WORK/certs/ca.crt" \
    --proxy-listen "127.0.0.1:$port" --status-listen "127.0.0.1:$status" --workers 1 --log-level warn \
    "$@" >"$logf" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}
admin_put() {  # admin_put ADMIN_PORT PATH JSON: PUT an Admin API entity (fails the script on error)
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$1$2" -H 'Content-Type: application/json' -d "$3"
}
