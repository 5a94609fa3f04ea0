#!/usr/bin/env bash
# Soak under AddressSanitizer + LeakSanitizer + UBSan (issue 9). One command, needs root; not run
# by CI (it takes SOAK_SECONDS, 600 by default):
#
#   tests/soak/soak.sh
#
# Builds portico-cp and portico-dp with -fsanitize=address,undefined in build-asan (portico-echo,
# the upstream, comes from the same tree), then on loopback only, for SOAK_SECONDS:
#   - proxied load through one DP (2 workers): wrk keep-alive GETs, wrk `Connection: close` GETs,
#     wrk with 8 requests pipelined per write, wrk POSTs of a 256 KiB Content-Length body, and a
#     Python client streaming chunked bodies (64 chunks of 4 KiB);
#   - an Admin API write every 100 ms (create a route, delete the previous one, patch the
#     service), so the DP applies a new snapshot about ten times a second under load;
#   - the CP's and the DP's RSS sampled every 10 s.
# Then it stops the load, checks every answer, stops the DP and the CP with SIGTERM (LeakSanitizer
# runs at their exit) and fails on any sanitizer report, any unexpected error, or RSS growth of
# more than SOAK_RSS_GROWTH percent between the first sample after warm-up (60 s) and the end.
# Every process started here is stopped by PID on exit.
#
# Environment (defaults): SOAK_SECONDS (600) SOAK_RSS_GROWTH (15) BUILD_DIR (build-asan) JOBS (2)
#   ASAN_OPTIONS (leaks on, 16 MiB quarantine, see below)
#   SOAK_SKIP_INSTALL=1, SOAK_SKIP_BUILD=1, SOAK_OUT (build-asan/soak-<time>)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-asan}
SECONDS_TOTAL=${SOAK_SECONDS:-600}
RSS_GROWTH=${SOAK_RSS_GROWTH:-15}
OUT=${SOAK_OUT:-$BUILD/soak-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

if [ "${SOAK_SKIP_INSTALL:-0}" != 1 ]; then
  bash "$ROOT/deploy/install-deps.sh"
  missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  [ -x "$PY" ] || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
if [ "${SOAK_SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD/build.ninja" ]; then
    san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    CCACHE_DIR=${CCACHE_DIR:-$ROOT/.cache/ccache} cmake -S "$ROOT" -B "$BUILD" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
  fi
  CCACHE_DIR=${CCACHE_DIR:-$ROOT/.cache/ccache} ninja -C "$BUILD" -j "${JOBS:-2}" portico-cp portico-dp portico-echo
fi
CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
ECHO_BIN=$BUILD/tests/integration/portico-echo

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/portico-soak.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
LAST_PID=
start() {  # start NAME cmd...: background (a child of this shell), output to $OUT/NAME.log; LAST_PID
  local name=$1; shift
  "$@" >"$OUT/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # wait_http URL: up to 60 s (sanitized binaries start slowly)
  for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  return 1
}

# Sanitizers: every report is fatal and ends up in the process log; leaks are reported at exit.
# A small quarantine: ASan's default (256 MiB of freed memory held back to catch use-after-free)
# makes RSS climb for minutes and would hide or fake a trend; 16 MiB still catches most.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0:print_summary=1:quarantine_size_mb=16:thread_local_quarantine_size_kb=256:allocator_release_to_os_interval_ms=5000}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=${LSAN_OPTIONS:-}

ADMIN=$(free_port); CLUSTER=$(free_port); PROXY=$(free_port); STATUS=$(free_port)
"$CP_BIN" gen-certs "$WORK/certs" --dp-id soak-dp >"$OUT/gen-certs.log" 2>&1 || die "gen-certs"
start echo "$ECHO_BIN" 0; ECHO_PID=$LAST_PID
for _ in $(seq 1 100); do grep -q "listening on" "$OUT/echo.log" && break; sleep 0.05; done
UPSTREAM=$(sed -n 's/.*listening on \(127.0.0.1:[0-9]*\).*/\1/p' "$OUT/echo.log")
[ -n "$UPSTREAM" ] || die "portico-echo did not start"
start cp "$CP_BIN" --db "$WORK/portico.db" --admin-listen "127.0.0.1:$ADMIN" \
  --cluster-listen "127.0.0.1:$CLUSTER" --cluster-cert "$WORK/certs/cp.crt" \
  --cluster-key "$WORK/certs/cp.key" --cluster-ca "$WORK/certs/ca.crt"
CP_PID=$LAST_PID
wait_http "http://127.0.0.1:$ADMIN/status" || die "CP did not answer"
start dp "$DP_BIN" --control-plane "127.0.0.1:$CLUSTER" --cluster-cert "$WORK/certs/dp.crt" \
  --cluster-key "$WORK/certs/dp.key" --cluster-ca "$WORK/certs/ca.crt" --workers 2 \
  --proxy-listen "127.0.0.1:$PROXY" --status-listen "127.0.0.1:$STATUS"
DP_PID=$LAST_PID
admin() { curl -s -o /dev/null -w '%{http_code}' -X "$1" "http://127.0.0.1:$ADMIN$2" "${@:3}"; }
[ "$(admin POST /services -H 'Content-Type: application/json' \
     -d "{\"name\":\"soak\",\"url\":\"http://$UPSTREAM\"}")" = 201 ] || die "create service"
[ "$(admin POST /services/soak/routes -H 'Content-Type: application/json' \
     -d '{"name":"soak","paths":["/soak"]}')" = 201 ] || die "create route"
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY/soak/ready")" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY/soak/ready")" = 200 ] || die "DP not serving"
log "CP pid $CP_PID, DP pid $DP_PID, upstream $UPSTREAM, proxy port $PROXY; ${SECONDS_TOTAL}s; output in $OUT"

# --- load -------------------------------------------------------------------------------------
cat >"$WORK/pipeline.lua" <<'EOF'
init = function(args)
  local r = {}
  for i = 1, 8 do r[i] = wrk.format("GET", "/soak/pipelined") end
  req = table.concat(r)
end
request = function() return req end
EOF
cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("p", 256 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
cat >"$WORK/chunked.py" <<'EOF'
import http.client, json, sys, time
port, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
ok = bad = 0
piece = b"c" * 4096
while time.time() < deadline:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(20):
            c.request("POST", "/soak/chunked", body=(piece for _ in range(64)), encode_chunked=True)
            r = c.getresponse()
            body = r.read()
            if r.status == 200 and json.loads(body).get("body_len") == 64 * 4096:
                ok += 1
            else:
                bad += 1
                print("bad answer", r.status, body[:200], flush=True)
        c.close()
    except Exception as e:  # noqa: BLE001 - counted and printed
        bad += 1
        print("error", repr(e), flush=True)
print(f"chunked ok={ok} bad={bad}", flush=True)
EOF
BASE="http://127.0.0.1:$PROXY"
start wrk-keepalive wrk -t1 -c32 -d"${SECONDS_TOTAL}s" --timeout 10s "$BASE/soak/keepalive"; W_KA=$LAST_PID
start wrk-close wrk -t1 -c8 -d"${SECONDS_TOTAL}s" --timeout 10s -H "Connection: close" "$BASE/soak/close"; W_CLOSE=$LAST_PID
start wrk-pipelined wrk -t1 -c4 -d"${SECONDS_TOTAL}s" --timeout 10s -s "$WORK/pipeline.lua" "$BASE"; W_PIPE=$LAST_PID
start wrk-post wrk -t1 -c4 -d"${SECONDS_TOTAL}s" --timeout 10s -s "$WORK/post.lua" "$BASE/soak/post"; W_POST=$LAST_PID
start chunked "$PY" "$WORK/chunked.py" "$PROXY" "$SECONDS_TOTAL"; CHUNKED=$LAST_PID

# Admin writes every 100 ms, and RSS every 10 s.
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
echo "seconds cp_rss_kb dp_rss_kb" >"$OUT/rss.txt"
writes=0; write_errors=0; end=$(( $(date +%s) + SECONDS_TOTAL )); next_rss=$(date +%s); i=0
while [ "$(date +%s)" -lt "$end" ]; do
  i=$((i + 1))
  code=$(admin POST /services/soak/routes -H 'Content-Type: application/json' \
         -d "{\"name\":\"tmp-$i\",\"paths\":[\"/tmp-$i\"]}")
  [ "$code" = 201 ] || { write_errors=$((write_errors + 1)); echo "POST tmp-$i: $code" >>"$OUT/admin-errors.txt"; }
  if [ $i -gt 1 ]; then
    code=$(admin DELETE "/routes/tmp-$((i - 1))")
    [ "$code" = 204 ] || { write_errors=$((write_errors + 1)); echo "DELETE tmp-$((i - 1)): $code" >>"$OUT/admin-errors.txt"; }
  fi
  code=$(admin PATCH /services/soak -H 'Content-Type: application/json' -d "{\"retries\":$((i % 5))}")
  [ "$code" = 200 ] || { write_errors=$((write_errors + 1)); echo "PATCH: $code" >>"$OUT/admin-errors.txt"; }
  writes=$((writes + 3))
  now=$(date +%s)
  if [ "$now" -ge "$next_rss" ]; then
    echo "$((now - end + SECONDS_TOTAL)) $(rss_kb "$CP_PID") $(rss_kb "$DP_PID")" >>"$OUT/rss.txt"
    next_rss=$((now + 10))
  fi
  sleep 0.1
done
log "load window over; waiting for the load generators"
for pid in "$W_KA" "$W_CLOSE" "$W_PIPE" "$W_POST" "$CHUNKED"; do
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
done
echo "$SECONDS_TOTAL $(rss_kb "$CP_PID") $(rss_kb "$DP_PID")" >>"$OUT/rss.txt"
DP_VERSION=$(curl -s "http://127.0.0.1:$STATUS/status" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("config_version"))' 2>/dev/null || echo "?")
CP_VERSION=$(curl -s "http://127.0.0.1:$ADMIN/status" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("configuration_version"))' 2>/dev/null || echo "?")

# --- stop, then judge ---------------------------------------------------------------------------
stop() {  # stop PID NAME: SIGTERM, up to 30 s (LeakSanitizer runs at exit), then SIGKILL
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return $?; }; sleep 0.1; done
  log "$2 did not exit after SIGTERM"; kill -9 "$1"; return 99
}
set +e
stop "$DP_PID" dp; dp_rc=$?
stop "$CP_PID" cp; cp_rc=$?
kill -TERM "$ECHO_PID" 2>/dev/null
set -e

failures=()
summary() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }
: >"$OUT/summary.txt"
for name in keepalive close pipelined post; do
  f="$OUT/wrk-$name.log"
  requests=$(awk '/requests in/ {print $1}' "$f")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$f")
  sockerr=$(sed -n 's/.*Socket errors: //p' "$f")
  summary "wrk $name: ${requests:-?} requests, non-2xx ${non2xx:-0}, socket errors: ${sockerr:-none}; $(awk '/Requests\/sec/ {print $2 " req/s"}' "$f")"
  [ -n "$requests" ] || failures+=("wrk $name produced no result")
  [ -z "$non2xx" ] || failures+=("wrk $name: $non2xx non-2xx answers")
  [ -z "$sockerr" ] || failures+=("wrk $name: socket errors $sockerr")
done
chunked_line=$(grep '^chunked ok=' "$OUT/chunked.log" || true)
summary "chunked bodies: ${chunked_line:-no result}"
[[ "$chunked_line" == *"bad=0"* ]] || failures+=("chunked client: ${chunked_line:-no result}")
summary "admin writes: $writes, errors $write_errors; final CP version $CP_VERSION, DP version $DP_VERSION"
[ "$write_errors" -eq 0 ] || failures+=("$write_errors admin write errors (admin-errors.txt)")
summary "exit codes: dp $dp_rc, cp $cp_rc"
[ "$dp_rc" -eq 0 ] || failures+=("dp exit code $dp_rc")
[ "$cp_rc" -eq 0 ] || failures+=("cp exit code $cp_rc")
for name in cp dp; do
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$OUT/$name.log"; then
    failures+=("sanitizer report in $name.log")
    grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY|runtime error:' "$OUT/$name.log" | head -5 >&2
  fi
done
# RSS: first sample at or after 60 s (warm) against the last one.
read -r cp_warm dp_warm < <(awk 'NR > 1 && $1 >= 60 {print $2, $3; exit}' "$OUT/rss.txt")
read -r cp_end dp_end < <(tail -1 "$OUT/rss.txt" | awk '{print $2, $3}')
cp_max=$(awk 'NR > 1 {if ($2 > m) m = $2} END {print m}' "$OUT/rss.txt")
dp_max=$(awk 'NR > 1 {if ($3 > m) m = $3} END {print m}' "$OUT/rss.txt")
summary "RSS KiB (warm at 60 s -> end, max): cp ${cp_warm:-?} -> ${cp_end:-?} (max $cp_max), dp ${dp_warm:-?} -> ${dp_end:-?} (max $dp_max)"
if [ -n "${cp_warm:-}" ] && [ -n "${dp_warm:-}" ]; then
  [ "$cp_end" -le $(( cp_warm * (100 + RSS_GROWTH) / 100 )) ] || failures+=("CP RSS grew more than $RSS_GROWTH%")
  [ "$dp_end" -le $(( dp_warm * (100 + RSS_GROWTH) / 100 )) ] || failures+=("DP RSS grew more than $RSS_GROWTH%")
else
  failures+=("no RSS sample after warm-up (SOAK_SECONDS too short?)")
fi
if [ ${#failures[@]} -gt 0 ]; then
  for f in "${failures[@]}"; do log "FAIL: $f"; done
  die "soak failed; logs in $OUT"
fi
log "PASS; logs in $OUT"
