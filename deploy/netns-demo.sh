#!/usr/bin/env bash
# Edge nodes in network namespaces (needs root): a control plane in one namespace, three data
# planes in three others and an upstream in a fifth, joined only by a bridge that lives in a
# namespace of its own. nftables in the CP's namespace accepts the cluster port from the DP subnet
# and nothing else, although the Admin API listens on 0.0.0.0 there. Checks, each printed as
# PASS or FAIL:
#   - a request through each DP reaches the upstream;
#   - each DP opens a TCP connection to the CP's cluster port, and cannot open one to its Admin port;
#   - with the CP's link down, the CP is unreachable and every DP keeps serving;
#   - with the link up again, a new route reaches every DP.
# Every process is stopped by PID and every namespace (with its links) removed at the end, also on
# failure or Ctrl-C. Exit 0 when every check passed, 1 when one failed, 77 when it cannot run here
# (not root, no `ip netns`, no nft).
#   deploy/netns-demo.sh [BUILD_DIR]     (default ./build; needs portico-cp and portico-dp built)
set -uo pipefail
BUILD_DIR=${1:-${BUILD_DIR:-build}}
CP_BIN=$(realpath -e "$BUILD_DIR/control_plane/portico-cp" 2>/dev/null) || CP_BIN=""
DP_BIN=$(realpath -e "$BUILD_DIR/data_plane/portico-dp" 2>/dev/null) || DP_BIN=""

skip() { echo "netns-demo: SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
for tool in ip nft curl python3 timeout; do
  command -v "$tool" >/dev/null || skip "$tool is missing (deploy/install-deps.sh installs it)"
done
if [ -z "$CP_BIN" ] || [ -z "$DP_BIN" ]; then
  echo "netns-demo: portico-cp or portico-dp not found under $BUILD_DIR (deploy/build.sh portico-cp portico-dp)" >&2
  exit 1
fi

# Names unique to this run, so two runs (or a leftover) never collide.
ID=$(printf '%04x' $(( (RANDOM << 1 ^ $$) & 0xffff )))
NS_BR=ptn$ID-br NS_CP=ptn$ID-cp NS_UP=ptn$ID-up
NS_DP=("ptn$ID-dp1" "ptn$ID-dp2" "ptn$ID-dp3")
NET=10.77.0
CP_IP=$NET.1 UP_IP=$NET.20
DP_IP=("$NET.11" "$NET.12" "$NET.13")
CLUSTER_PORT=8005 ADMIN_PORT=8001 PROXY_PORT=8000 STATUS_PORT=8100 UPSTREAM_PORT=9000
CP_NAME=cp.portico-demo
WORK=$(mktemp -d /tmp/portico-netns-demo.XXXXXX)
NAMESPACES=() PIDS=() FAILED=0 STARTED=$SECONDS

cleanup() {
  trap - EXIT INT TERM
  local pid ns
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  local left
  left=$(ip netns list | grep -c "^ptn$ID-")
  if [ "$FAILED" -ne 0 ] && [ -d "$WORK" ]; then
    for log in "$WORK"/*.log; do echo "--- $(basename "$log") (last lines)"; tail -n 15 "$log"; done
  fi
  rm -rf "$WORK"
  if [ "$left" -ne 0 ]; then
    echo "FAIL  cleanup: $left namespace(s) ptn$ID-* left"
    FAILED=1
  else
    echo "PASS  cleanup: every process stopped, every namespace and link removed"
  fi
  echo "netns-demo: $([ "$FAILED" -eq 0 ] && echo PASS || echo FAIL) in $(( SECONDS - STARTED )) s"
  exit "$FAILED"
}
trap cleanup EXIT
trap 'echo "netns-demo: interrupted"; FAILED=1; exit 1' INT TERM

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
die() { echo "netns-demo: setup failed: $*" >&2; FAILED=1; exit 1; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# start NS NAME CMD...: runs CMD in NS in the background (ip netns exec execs it: $! is its PID).
start() {
  local ns=$1 name=$2; shift 2
  ip netns exec "$ns" "$@" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
# wait_until SECONDS CMD...: retries CMD every 0.2 s until it succeeds or the time is up.
wait_until() {
  local deadline=$(( SECONDS + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
# tcp_connect NS IP PORT: 0 when a TCP connection opens within 1 s (same namespace bridge: plenty).
tcp_connect() { in_ns "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }
admin() { in_ns "$NS_CP" curl -fsS --max-time 5 -H "Authorization: Bearer $(cat "$WORK/admin.token")" "$@"; }

echo "netns-demo: namespaces ptn$ID-{br,cp,up,dp1,dp2,dp3}, subnet $NET.0/24, logs in $WORK"

# --- the network: one bridge in its own namespace, one veth per node ---
# A container without CAP_SYS_ADMIN cannot make namespaces at all: that is a skip, not a failure.
if ! probe=$(ip netns add "$NS_BR" 2>&1); then
  trap - EXIT
  rm -rf "$WORK"
  skip "cannot create a network namespace here: $probe"
fi
NAMESPACES+=("$NS_BR")
for ns in "$NS_CP" "$NS_UP" "${NS_DP[@]}"; do
  ip netns add "$ns" || die "ip netns add $ns"
  NAMESPACES+=("$ns")
done
for ns in "${NAMESPACES[@]}"; do ip -n "$ns" link set lo up || die "lo up in $ns"; done
{ ip -n "$NS_BR" link add br0 type bridge && ip -n "$NS_BR" link set br0 up; } || die "bridge"
# attach NS IP PORT_NAME: a veth pair, eth0 in NS with IP, PORT_NAME on the bridge.
attach() {
  ip link add eth0 netns "$1" type veth peer name "$3" netns "$NS_BR" &&
    ip -n "$NS_BR" link set "$3" master br0 && ip -n "$NS_BR" link set "$3" up &&
    ip -n "$1" addr add "$2/24" dev eth0 && ip -n "$1" link set eth0 up
}
attach "$NS_CP" "$CP_IP" p-cp || die "link of the CP"
attach "$NS_UP" "$UP_IP" p-up || die "link of the upstream"
for i in 0 1 2; do attach "${NS_DP[$i]}" "${DP_IP[$i]}" "p-dp$((i + 1))" || die "link of dp$((i + 1))"; done

# The CP's namespace takes the cluster port from the DP subnet, and nothing else from anywhere.
cat > "$WORK/cp-firewall.nft" <<EOF
table inet portico_edge {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    ip saddr $NET.0/24 tcp dport $CLUSTER_PORT accept
  }
}
EOF
in_ns "$NS_CP" nft -f "$WORK/cp-firewall.nft" || die "nftables in the CP namespace"

# --- certificates, upstream, CP, DPs ---
"$CP_BIN" gen-certs "$WORK/certs" --cp-names "$CP_NAME" > "$WORK/gen-certs.log" 2>&1 || die "gen-certs"
for i in 1 2 3; do
  "$CP_BIN" gen-certs "$WORK/certs" --dp-id "edge-$i" >> "$WORK/gen-certs.log" 2>&1 || die "gen-certs edge-$i"
done
head -c 32 /dev/urandom | base64 > "$WORK/admin.token"
mkdir -p "$WORK/www" && echo "hello from the upstream namespace" > "$WORK/www/hello.txt"

start "$NS_UP" upstream python3 -m http.server "$UPSTREAM_PORT" --bind "$UP_IP" --directory "$WORK/www"
# The Admin API listens on every address of the CP's namespace: only nftables keeps DPs out.
start "$NS_CP" cp "$CP_BIN" --db "$WORK/cp/portico.db" --admin-listen "0.0.0.0:$ADMIN_PORT" \
  --admin-token-file "$WORK/admin.token" --cluster-listen "0.0.0.0:$CLUSTER_PORT" \
  --cluster-cert "$WORK/certs/cp.crt" --cluster-key "$WORK/certs/cp.key" --cluster-ca "$WORK/certs/ca.crt"
wait_until 20 admin -o /dev/null "http://127.0.0.1:$ADMIN_PORT/status" || die "the CP's Admin API did not answer"
admin -o /dev/null -X PUT "http://127.0.0.1:$ADMIN_PORT/services/demo" -H 'Content-Type: application/json' \
  -d "{\"url\":\"http://$UP_IP:$UPSTREAM_PORT\"}" || die "PUT /services/demo"
admin -o /dev/null -X PUT "http://127.0.0.1:$ADMIN_PORT/routes/demo" -H 'Content-Type: application/json' \
  -d '{"paths":["/demo"],"service":{"name":"demo"}}' || die "PUT /routes/demo"

for i in 0 1 2; do
  n=$((i + 1))
  start "${NS_DP[$i]}" "dp$n" "$DP_BIN" --control-plane "$CP_IP:$CLUSTER_PORT" --cluster-server-name "$CP_NAME" \
    --cluster-cert "$WORK/certs/edge-$n.crt" --cluster-key "$WORK/certs/edge-$n.key" \
    --cluster-ca "$WORK/certs/ca.crt" --proxy-listen "0.0.0.0:$PROXY_PORT" --proxy-ssl-listen off \
    --status-listen "127.0.0.1:$STATUS_PORT" --workers 1
done
for i in 0 1 2; do
  wait_until 30 in_ns "${NS_DP[$i]}" curl -fsS --max-time 2 "http://127.0.0.1:$STATUS_PORT/status/ready" ||
    die "dp$((i + 1)) did not become ready"
done
echo "netns-demo: CP, upstream and 3 DPs up after $(( SECONDS - STARTED )) s"

# --- checks ---
# proxied NS IP PATH: the body a request through the DP at IP answers, sent from the DP's namespace.
proxied() { in_ns "$1" curl -fsS --max-time 3 "http://$2:$PROXY_PORT$3"; }
expect_hello() {  # expect_hello WHAT: a request through every DP reaches the upstream
  local i body
  for i in 0 1 2; do
    body=$(proxied "${NS_DP[$i]}" "${DP_IP[$i]}" /demo/hello.txt 2>&1)
    if [ "$body" = "hello from the upstream namespace" ]; then
      pass "dp$((i + 1)) ($1): GET /demo/hello.txt reaches the upstream"
    else
      fail "dp$((i + 1)) ($1): GET /demo/hello.txt answered '${body:0:120}'"
    fi
  done
}
expect_hello "CP up"

if admin -o /dev/null "http://$CP_IP:$ADMIN_PORT/status"; then
  pass "the Admin API answers on $CP_IP:$ADMIN_PORT inside the CP namespace (it listens on 0.0.0.0)"
else
  fail "the Admin API does not answer on $CP_IP:$ADMIN_PORT inside the CP namespace"
fi
for i in 0 1 2; do
  n=$((i + 1))
  if tcp_connect "${NS_DP[$i]}" "$CP_IP" "$CLUSTER_PORT"; then
    pass "dp$n opens a TCP connection to the cluster port $CP_IP:$CLUSTER_PORT"
  else
    fail "dp$n cannot open a TCP connection to the cluster port $CP_IP:$CLUSTER_PORT"
  fi
  if tcp_connect "${NS_DP[$i]}" "$CP_IP" "$ADMIN_PORT"; then
    fail "dp$n opened a TCP connection to the Admin port $CP_IP:$ADMIN_PORT"
  else
    pass "dp$n cannot open a TCP connection to the Admin port $CP_IP:$ADMIN_PORT"
  fi
  if in_ns "${NS_DP[$i]}" curl -sS --max-time 2 -o /dev/null "http://$CP_IP:$ADMIN_PORT/status" 2>/dev/null; then
    fail "dp$n got an HTTP answer from the Admin API"
  else
    pass "dp$n gets no HTTP answer from the Admin API"
  fi
done
connected=$(admin "http://127.0.0.1:$ADMIN_PORT/clustering/data-planes" | python3 -c \
  'import json,sys; print(sorted(d["id"] for d in json.load(sys.stdin)["data"]))' 2>/dev/null)
if [ "$connected" = "['edge-1', 'edge-2', 'edge-3']" ]; then
  pass "GET /clustering/data-planes lists edge-1, edge-2 and edge-3"
else
  fail "GET /clustering/data-planes lists $connected"
fi

ip -n "$NS_CP" link set eth0 down || die "link down"
echo "netns-demo: the CP's link is down"
if tcp_connect "${NS_DP[0]}" "$CP_IP" "$CLUSTER_PORT"; then
  fail "dp1 still reaches the cluster port with the CP's link down"
else
  pass "dp1 cannot reach the CP with the CP's link down"
fi
expect_hello "CP link down"
sleep 3
expect_hello "CP link down for 3 s more"

ip -n "$NS_CP" link set eth0 up || die "link up"
echo "netns-demo: the CP's link is up again; adding route /later"
admin -o /dev/null -X PUT "http://127.0.0.1:$ADMIN_PORT/routes/later" -H 'Content-Type: application/json' \
  -d '{"paths":["/later"],"service":{"name":"demo"}}' || fail "PUT /routes/later"
for i in 0 1 2; do
  if wait_until 45 proxied "${NS_DP[$i]}" "${DP_IP[$i]}" /later/hello.txt; then
    pass "dp$((i + 1)) serves the route added after the link came back"
  else
    fail "dp$((i + 1)) does not serve /later 45 s after the link came back"
  fi
done
# cleanup (the EXIT trap) prints the verdict and sets the exit code.
