#!/usr/bin/env bash
# Declarative config with 100,000 entities: the CLI, POST /config and a DB-less DP (issue 15).
# One command, needs root (to install what is missing):
#
#   bench/declarative_100k.sh
#
# Installs what is missing (`time` for /usr/bin/time), builds portico-cp and portico-dp in build-p
# (Release), generates a kong.yml (YAML, and the same document as JSON) with bench/
# declarative_helper.py — by default 20,000 services each with 2 nested routes, 20,000 consumers
# each with 1 key-auth credential: 100,000 entities, unique names, paths and keys — outside the
# timed parts, then measures, $BENCH_ROUNDS times each (median and max in the table):
#   validate-yaml/json  `portico-cp config validate FILE`: wall time and peak RSS (/usr/bin/time);
#   import              `portico-cp config import FILE --db fresh.db` into a new database: same;
#   post                POST /config of the YAML file to a fresh portico-cp (loopback, generated
#                       certs, --max-body-bytes 64 MiB) with a hybrid portico-dp connected: time
#                       from the request to the 201 (curl), then from the request until the CP's
#                       GET /status shows the snapshot of that version published
#                       (config_build.published_version), and until the DP's /status shows that
#                       version; the CP's VmHWM before the POST and after the DP synced, the DP's
#                       VmHWM after;
#   post-again          the same file POSTed again to that CP (100,000 entities replacing the
#                       same 100,000, a new version): the same figures;
#   dp-start            `portico-dp --declarative-config FILE` (YAML): from exec to /status/ready
#                       = 200, and its VmHWM then.
# After each DP is up, a request for the last generated route must reach the route (any answer
# but 404; the upstream is the discard port, so 502 is expected). The CLI and the CP run on CPU
# $BENCH_CP_CPU, the DPs on CPU $BENCH_DP_CPU. The issue's goal is <= 10 s for each step.
# Prints a Markdown table (summary.md) with the load average before and after, and keeps the raw
# figures (results.tsv) and the logs in $BENCH_OUT. Every process started here is stopped by PID
# on exit. About 1 minute on a quiet machine with the defaults (3 on a busy one).
#
# Environment (defaults): BENCH_SERVICES (20000), BENCH_ROUTES_PER_SERVICE (2), BENCH_CONSUMERS
#   (20000), BENCH_CREDENTIALS_PER_CONSUMER (1), BENCH_ROUNDS (3), BENCH_CP_CPU (0),
#   BENCH_DP_CPU (1), BENCH_SKIP_INSTALL=1, BENCH_SKIP_BUILD=1, BUILD_DIR (build-p), JOBS (2),
#   BENCH_OUT (build-p/bench-results/declarative-<time>), BENCH_KEEP_WORK=1 (keep the temp dir
#   with the generated files and the logs). Shared helpers: bench/lib.sh.
set -euo pipefail
LOG_PREFIX=declarative-bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"  # ROOT, BUILD, PY, log/die, build, processes, ports, Portico
SERVICES=${BENCH_SERVICES:-20000}
ROUTES_PER_SERVICE=${BENCH_ROUTES_PER_SERVICE:-2}
CONSUMERS=${BENCH_CONSUMERS:-20000}
CREDENTIALS_PER_CONSUMER=${BENCH_CREDENTIALS_PER_CONSUMER:-1}
ROUNDS=${BENCH_ROUNDS:-3}
CP_CPU=${BENCH_CP_CPU:-0}
DP_CPU=${BENCH_DP_CPU:-1}
OUT=${BENCH_OUT:-$BUILD/bench-results/declarative-$(date +%Y%m%d-%H%M%S)}
DHELPER="$ROOT/bench/declarative_helper.py"
TIME=/usr/bin/time

bench_install /usr/bin/time:time /usr/bin/python3:python3 taskset:util-linux curl:curl
for tool in "$TIME" "$PY"; do [ -x "$tool" ] || die "missing $tool (apt-get install time python3)"; done
for tool in taskset curl; do command -v "$tool" >/dev/null || die "missing $tool"; done
bench_build portico-cp portico-dp
CP_BIN=$BUILD/control_plane/portico-cp
DP_BIN=$BUILD/data_plane/portico-dp
for f in "$CP_BIN" "$DP_BIN"; do [ -x "$f" ] || die "missing $f (build first)"; done

bench_workdir portico-declarative-bench
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $LOAD_BEFORE"

# ---- the document (not timed) -------------------------------------------------------------------
YAML=$WORK/kong.yml
JSON=$WORK/kong.json
COUNTS=$("$PY" "$DHELPER" generate --services "$SERVICES" --routes-per-service "$ROUTES_PER_SERVICE" \
         --consumers "$CONSUMERS" --credentials-per-consumer "$CREDENTIALS_PER_CONSUMER" \
         --yaml "$YAML" --json "$JSON") || die "generating the document failed"
ENTITIES=$(echo "$COUNTS" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["total"])')
YAML_BYTES=$(stat -c %s "$YAML")
JSON_BYTES=$(stat -c %s "$JSON")
echo "$COUNTS" >"$OUT/entities.json"
log "document: $COUNTS; YAML $YAML_BYTES bytes, JSON $JSON_BYTES bytes"
# The last generated route: each DP must route it (no 404) once it is up.
LAST_PATH=$(printf '/svc-%06d/r%d/x' $(( SERVICES - 1 )) $(( ROUTES_PER_SERVICE - 1 )))

RESULTS=$OUT/results.tsv
echo "# step round seconds peak_kib publish_s dp_sync_s cp_hwm_before_kib dp_hwm_kib cpu_s dp_cpu_s rss_kib" >"$RESULTS"
record() { echo "$*" >>"$RESULTS"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }  # since START END: END - START
vm_hwm() { "$PY" "$DHELPER" vm "$1" | cut -d' ' -f1; }
vm_rss() { "$PY" "$DHELPER" vm "$1" | cut -d' ' -f2; }
ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}'; }
check_routed() {  # check_routed PROXY_PORT WHO: the last route answers, and not with a 404
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$LAST_PATH" || true)
  { [ "$code" != 404 ] && [ "$code" != 000 ]; } || die "$2: $LAST_PATH answered $code, the route is missing"
}

# ---- a, b: the CLI ------------------------------------------------------------------------------
timed_cli() {  # timed_cli STEP ROUND ARGS...: runs portico-cp ARGS under /usr/bin/time, records it
  local step=$1 round=$2 seconds kib user sys
  shift 2
  taskset -c "$CP_CPU" "$TIME" -f '%e s %M KiB %U %S' -o "$WORK/time.txt" "$CP_BIN" "$@" \
    >"$WORK/$step-$round.log" 2>&1 || die "$step: portico-cp $* failed: $(tail -n 5 "$WORK/$step-$round.log")"
  read -r seconds _ kib _ user sys <"$WORK/time.txt"
  record "$step $round $seconds $kib - - - - $(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}') - -"
  log "  $step round $round: $seconds s (CPU $user user, $sys sys), peak RSS $(( kib / 1024 )) MiB: $(head -c 300 "$WORK/$step-$round.log")"
}
for round in $(seq 1 "$ROUNDS"); do
  timed_cli validate-yaml "$round" config validate "$YAML"
  timed_cli validate-json "$round" config validate "$JSON"
  rm -f "$WORK"/fresh.db*
  timed_cli import "$round" config import "$YAML" --db "$WORK/fresh.db"
done
cp "$WORK/validate-yaml-1.log" "$WORK/import-1.log" "$OUT/"

# ---- c: POST /config to a running CP with a hybrid DP --------------------------------------------
gen_certs bench-dp
post_config() {  # post_config STEP ROUND: POSTs the YAML file, waits for the CP's build and the DP
  local step=$1 round=$2 before start answer code seconds synced version published dp_synced cp_ticks dp_ticks
  before=$(vm_hwm "$CP_PID")
  cp_ticks=$(cpu_ticks "$CP_PID")
  dp_ticks=$(cpu_ticks "$DP_PID")
  start=$(now)
  answer=$(curl -sS -o "$WORK/post-$step-$round.json" -w '%{http_code} %{time_total}' -X POST \
           -H 'Content-Type: text/yaml' -H 'Expect:' --data-binary "@$YAML" \
           "http://127.0.0.1:$CP_ADMIN/config") || die "$step: POST /config failed"
  read -r code seconds <<<"$answer"
  [ "$code" = 201 ] || die "$step: POST /config answered $code: $(head -c 500 "$WORK/post-$step-$round.json")"
  synced=$("$PY" "$DHELPER" wait-sync "$CP_ADMIN" "$DP_STATUS" 300) ||
    die "$step: the CP's snapshot or the DP's sync did not come: $(tail -n 20 "$WORK/cp-$round.log") $(tail -n 20 "$WORK/dp-$round.log")"
  read -r version published dp_synced <<<"$synced"
  check_routed "$DP_PORT" "$step: hybrid DP"
  record "$step $round $seconds $(vm_hwm "$CP_PID") $(since "$start" "$published") $(since "$start" "$dp_synced") $before" \
    "$(vm_hwm "$DP_PID") $(ticks_to_s $(( $(cpu_ticks "$CP_PID") - cp_ticks ))) $(ticks_to_s $(( $(cpu_ticks "$DP_PID") - dp_ticks ))) $(vm_rss "$CP_PID")"
  tail -n1 "$RESULTS" | awk -v v="$version" '{ printf "  %s round %s: 201 after %.2f s, version %s published after %.2f s, DP synced after %.2f s; CP VmHWM %d -> %d MiB, DP VmHWM %d MiB; CPU: CP %.2f s, DP %.2f s; CP VmRSS %d MiB\n", $1, $2, $3, v, $5, $6, $7 / 1024, $4 / 1024, $8 / 1024, $9, $10, $11 / 1024 }' >&2
}
for round in $(seq 1 "$ROUNDS"); do
  read -r CP_ADMIN CP_CLUSTER DP_PORT DP_STATUS <<<"$(free_ports 4)"
  taskset -c "$CP_CPU" "$CP_BIN" --db "$WORK/cp-$round.db" --admin-listen "127.0.0.1:$CP_ADMIN" \
    --cluster-listen "127.0.0.1:$CP_CLUSTER" --cluster-cert "$WORK/certs/cp.crt" \
    --cluster-key "$WORK/certs/cp.key" --cluster-ca "$WORK/certs/ca.crt" \
    --max-body-bytes $(( 64 << 20 )) --log-level info >"$WORK/cp-$round.log" 2>&1 & CP_PID=$!
  PIDS+=("$CP_PID")
  wait_http "http://127.0.0.1:$CP_ADMIN/status" 30 || die "CP did not start: $(tail -n 20 "$WORK/cp-$round.log")"
  PROXY_CPU=$DP_CPU start_portico_dp "$DP_BIN" "$CP_CLUSTER" "$DP_PORT" "$DP_STATUS" "$WORK/dp-$round.log" \
    --proxy-ssl-listen off; DP_PID=$STARTED
  connected=0
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$DP_STATUS/status" 2>/dev/null | grep -q '"control_plane_connected":true'; then
      connected=1
      break
    fi
    sleep 0.1
  done
  [ "$connected" = 1 ] || die "the DP did not connect: $(tail -n 20 "$WORK/dp-$round.log")"
  post_config post "$round"
  post_config post-again "$round"
  stop_pid "$DP_PID"; forget_pid "$DP_PID"
  stop_pid "$CP_PID"; forget_pid "$CP_PID"
done
cp "$WORK/cp-1.log" "$WORK/dp-1.log" "$OUT/"

# ---- d: a DB-less DP from the file ---------------------------------------------------------------
for round in $(seq 1 "$ROUNDS"); do
  read -r DP_PORT DP_STATUS <<<"$(free_ports 2)"
  start=$(now)
  taskset -c "$DP_CPU" "$DP_BIN" --declarative-config "$YAML" --proxy-listen "127.0.0.1:$DP_PORT" \
    --proxy-ssl-listen off --status-listen "127.0.0.1:$DP_STATUS" --workers 1 --log-level info \
    >"$WORK/dbless-$round.log" 2>&1 & DP_PID=$!
  PIDS+=("$DP_PID")
  ready=$("$PY" "$DHELPER" wait-http "http://127.0.0.1:$DP_STATUS/status/ready" 300) ||
    die "the DB-less DP was not ready: $(tail -n 20 "$WORK/dbless-$round.log")"
  check_routed "$DP_PORT" "dp-start: DB-less DP"
  record "dp-start $round $(since "$start" "$ready") $(vm_hwm "$DP_PID") - - - - $(ticks_to_s "$(cpu_ticks "$DP_PID")") - $(vm_rss "$DP_PID")"
  tail -n1 "$RESULTS" | awk '{ printf "  dp-start round %s: ready after %.2f s, VmHWM %d MiB, VmRSS %d MiB, CPU %.2f s\n", $2, $3, $4 / 1024, $11 / 1024, $9 }' >&2
  stop_pid "$DP_PID"; forget_pid "$DP_PID"
done
cp "$WORK/dbless-1.log" "$OUT/"

# ---- the table ----------------------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $LOAD_AFTER"
"$PY" - "$RESULTS" "$ENTITIES" "$YAML_BYTES" "$JSON_BYTES" "$LOAD_BEFORE" "$LOAD_AFTER" "$ROUNDS" <<'EOF' | tee "$OUT/summary.md"
import statistics
import sys

path, entities, yaml_bytes, json_bytes, load_before, load_after, rounds = sys.argv[1:]
rows = {}
for line in open(path):
    if line.startswith("#") or not line.strip():
        continue
    step, _round, *values = line.split()
    rows.setdefault(step, []).append([None if v == "-" else float(v) for v in values])

def med(step, col):
    values = [r[col] for r in rows.get(step, []) if r[col] is not None]
    return statistics.median(values) if values else None

def mx(step, col):
    values = [r[col] for r in rows.get(step, []) if r[col] is not None]
    return max(values) if values else None

def secs(v):
    return "" if v is None else f"{v:.2f}"

def mib(v):
    return "" if v is None else f"{v / 1024:.0f}"

GOAL = 10.0

def goal(step, col):
    return "yes" if mx(step, col) <= GOAL else "**NO**"

print(f"Declarative config, {int(entities):,} entities (YAML {int(yaml_bytes) / 2**20:.1f} MiB, "
      f"JSON {int(json_bytes) / 2**20:.1f} MiB); median of {rounds} round{'s' if rounds != '1' else ''} "
      f"(max in brackets); load average before {load_before}, after {load_after}.\n")
print("| step | wall time (s) | CPU (s) | peak memory (MiB) | <= 10 s |")
print("|---|---:|---:|---|---|")
for step, label in [("validate-yaml", "`portico-cp config validate kong.yml`"),
                    ("validate-json", "`portico-cp config validate kong.json`"),
                    ("import", "`portico-cp config import kong.yml --db fresh.db`")]:
    if step in rows:
        print(f"| {label} | {secs(med(step, 0))} ({secs(mx(step, 0))}) | {secs(med(step, 6))} | "
              f"{mib(med(step, 1))} ({mib(mx(step, 1))}) peak RSS | {goal(step, 0)} |")
for step, label in [("post", "POST /config, empty CP"), ("post-again", "POST /config again, same file")]:
    if step not in rows:
        continue
    print(f"| {label}: request to 201 | {secs(med(step, 0))} ({secs(mx(step, 0))}) | | CP VmHWM "
          f"{mib(med(step, 4))} before, {mib(med(step, 1))} ({mib(mx(step, 1))}) after; VmRSS {mib(med(step, 8))} "
          f"after | {goal(step, 0)} |")
    print(f"| {label}: request to snapshot published (CP /status) | {secs(med(step, 2))} ({secs(mx(step, 2))}) | "
          f"{secs(med(step, 6))} CP | | {goal(step, 2)} |")
    print(f"| {label}: request to the hybrid DP on that version | {secs(med(step, 3))} ({secs(mx(step, 3))}) | "
          f"{secs(med(step, 7))} DP | DP VmHWM {mib(med(step, 5))} ({mib(mx(step, 5))}) | {goal(step, 3)} |")
if "dp-start" in rows:
    print(f"| `portico-dp --declarative-config kong.yml`: exec to /status/ready 200 | "
          f"{secs(med('dp-start', 0))} ({secs(mx('dp-start', 0))}) | {secs(med('dp-start', 6))} | "
          f"VmHWM {mib(med('dp-start', 1))} ({mib(mx('dp-start', 1))}); VmRSS {mib(med('dp-start', 8))} when ready | "
          f"{goal('dp-start', 0)} |")
EOF
log "results in $OUT"
