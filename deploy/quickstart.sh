#!/usr/bin/env bash
# Command 1 of the quick start: installs what is missing, builds, generates development
# certificates, starts an upstream, a CP and one DP, creates an example service and route, and
# runs until Ctrl-C, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${PORTICO_DATA:-$ROOT/data}
# Addresses: the same PORTICO_* variables the binaries read move them (docs/operations.md).
ADMIN=${PORTICO_ADMIN_LISTEN:-127.0.0.1:8001}
CLUSTER=${PORTICO_CLUSTER_LISTEN:-127.0.0.1:8005}
PROXY=${PORTICO_PROXY_LISTEN:-127.0.0.1:8000}
STATUS=${PORTICO_STATUS_LISTEN:-127.0.0.1:8100}
UPSTREAM_PORT=${PORTICO_UPSTREAM_PORT:-9000}  # the example upstream (quick start only)
# Where the DP dials the CP, and where curl reaches a listener bound to every address.
loopback() { case "$1" in 0.0.0.0:*) echo "127.0.0.1:${1##*:}";; "[::]:"*) echo "[::1]:${1##*:}";; *) echo "$1";; esac; }
CONTROL_PLANE=${PORTICO_CONTROL_PLANE:-$(loopback "$CLUSTER")}
ADMIN_URL=$(loopback "$ADMIN") PROXY_URL=$(loopback "$PROXY") STATUS_URL=$(loopback "$STATUS")

bash deploy/install-deps.sh
bash deploy/build.sh portico-cp portico-dp portico-echo
BIN=$ROOT/build
mkdir -p "$DATA"
[ -f "$DATA/certs/dp.crt" ] || "$BIN/control_plane/portico-cp" gen-certs "$DATA/certs" --dp-id dp-1

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping ${pids[*]:-nothing}"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

"$BIN/tests/integration/portico-echo" "$UPSTREAM_PORT" > "$DATA/upstream.log" 2>&1 & pids+=($!)
"$BIN/control_plane/portico-cp" --db "$DATA/portico.db" --admin-listen "$ADMIN" --cluster-listen "$CLUSTER" \
  --cluster-cert "$DATA/certs/cp.crt" --cluster-key "$DATA/certs/cp.key" --cluster-ca "$DATA/certs/ca.crt" \
  > "$DATA/cp.log" 2>&1 & pids+=($!)
"$BIN/data_plane/portico-dp" --control-plane "$CONTROL_PLANE" --proxy-listen "$PROXY" --status-listen "$STATUS" \
  --cluster-cert "$DATA/certs/dp.crt" --cluster-key "$DATA/certs/dp.key" --cluster-ca "$DATA/certs/ca.crt" \
  > "$DATA/dp.log" 2>&1 & pids+=($!)

wait_for() {  # wait_for URL SECONDS
  for _ in $(seq 1 $(( $2 * 10 ))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $1; logs in $DATA" >&2; return 1
}
wait_for "http://$ADMIN_URL/status" 20
curl -fsS -o /dev/null -X PUT "http://$ADMIN_URL/services/example" \
  -H 'Content-Type: application/json' -d "{\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/anything\"}"
curl -fsS -o /dev/null -X PUT "http://$ADMIN_URL/routes/example" \
  -H 'Content-Type: application/json' -d '{"paths":["/example"],"service":{"name":"example"}}'
wait_for "http://$STATUS_URL/status/ready" 20

cat <<MSG

Portico is running (logs in $DATA/*.log):
  Admin API   http://$ADMIN_URL      cluster (mTLS) $CLUSTER (DP dials $CONTROL_PLANE)
  Proxy       http://$PROXY_URL      DP status      http://$STATUS_URL/status

Try:
  curl -i http://$PROXY_URL/example/hello?x=1          # proxied to the upstream as /anything/hello?x=1
  curl -i --http2-prior-knowledge http://$PROXY_URL/example/h2   # the same over HTTP/2 (h2c)
  curl -s http://$ADMIN_URL/services | head -c 600; echo
  curl -s http://$ADMIN_URL/clustering/data-planes; echo
  curl -s -X POST http://$ADMIN_URL/services/example/routes -d name=two -d 'paths[]=/two'
  curl -i http://$PROXY_URL/two                        # a new route reaches the DP within a second

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see $DATA/*.log" >&2
