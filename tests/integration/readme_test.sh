#!/usr/bin/env bash
# Runs the README's "Running it yourself" section as written: every ```sh block preceded by
# `<!-- readme-test: run -->`, in order, in one shell. Only the variables the README marks as the
# ones to change (CERTS, DATA, CP_HOST, *_PORT, UPSTREAM) get test values: temporary folders
# instead of /etc/portico and /var/lib/portico, free ports instead of the defaults, a real upstream.
# Checks that the route the README creates is served, that its key-auth plugin then refuses a
# request without the key and lets the key through, and that the README's kill stops both.
#   readme_test.sh README.md CP_BIN_DIR DP_BIN_DIR ECHO_BIN
set -euo pipefail
README=$(realpath "$1") CP_DIR=$(realpath "$2") DP_DIR=$(realpath "$3") ECHO_BIN=$(realpath "$4")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portico-readme.XXXXXX")
ECHO_PID=""
fail() { echo "readme_test: FAIL: $*" >&2; for f in "$WORK"/run/*.log; do echo "--- $f" >&2; cat "$f" >&2; done; exit 1; }
cleanup() {
  # Stops by PID whatever is still running: the upstream, and the README's CP and DP.
  for pid in $ECHO_PID $(cat "$WORK/pids" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The blocks, in order, from the section only.
python3 - "$README" "$WORK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = text.split("## Running it yourself", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"<!-- readme-test: run -->\n```sh\n(.*?)```", section, re.S)
if len(blocks) != 4:
    sys.exit(f"expected 4 marked blocks in 'Running it yourself', found {len(blocks)}")
for i, b in enumerate(blocks, 1):
    open(f"{sys.argv[2]}/block{i}.sh", "w").write(b)
PY

# Distinct free ports below the kernel's ephemeral range (as PickFreePort in
# tests/integration/harness.cc), so that no outgoing connection of a test running in parallel
# takes one before the child binds it.
free_ports() { python3 -c '
import random, socket, sys
picked = []
while len(picked) < int(sys.argv[1]):
    p = random.randint(20000, 32767)
    s = socket.socket()
    try:
        if p not in picked:
            s.bind(("127.0.0.1", p)); picked.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, picked)))' "$1"; }
export CERTS="$WORK/etc/portico/certs" DATA="$WORK/var/lib/portico" CP_HOST=127.0.0.1
read -r ADMIN_PORT CLUSTER_PORT PROXY_PORT STATUS_PORT PROXY_SSL_PORT UPSTREAM_PORT < <(free_ports 6)
export ADMIN_PORT CLUSTER_PORT PROXY_PORT STATUS_PORT PROXY_SSL_PORT
export UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
export PATH="$CP_DIR:$DP_DIR:$PATH"
mkdir -p "$WORK/run"
"$ECHO_BIN" "$UPSTREAM_PORT" > "$WORK/run/upstream.log" 2>&1 &
ECHO_PID=$!
disown "$ECHO_PID"

# One shell runs the four blocks, with the waits a reader does by eye between them.
cat > "$WORK/run.sh" <<SH
set -euo pipefail
cd "$WORK/run"
source "$WORK/block1.sh"
echo "\$CP_PID \$DP_PID" > "$WORK/pids"
for _ in \$(seq 1 200); do curl -fsS -o /dev/null "127.0.0.1:\$ADMIN_PORT/status" 2>/dev/null && break; sleep 0.1; done
# ... and for the DP's proxy listener (any answer, 404 before the route exists).
for _ in \$(seq 1 200); do curl -sS -o /dev/null "127.0.0.1:\$PROXY_PORT/" 2>/dev/null && break; sleep 0.1; done
source "$WORK/block2.sh" > "$WORK/run/block2.out" 2>&1
served=no
for _ in \$(seq 1 100); do
  if curl -fsS "127.0.0.1:\$PROXY_PORT/example/readme?x=1" > "$WORK/run/proxied.out" 2>&1; then served=yes; break; fi
  sleep 0.1
done
echo "served=\$served" > "$WORK/served"
source "$WORK/block3.sh" > "$WORK/run/block3.out" 2>&1
protected=no
for _ in \$(seq 1 100); do
  without=\$(curl -sS -o /dev/null -w '%{http_code}' "127.0.0.1:\$PROXY_PORT/example/readme" 2>/dev/null || true)
  with=\$(curl -sS -o "$WORK/run/with-key.out" -w '%{http_code}' -H 'apikey: alice-secret-key' \
         "127.0.0.1:\$PROXY_PORT/example/readme" 2>/dev/null || true)
  if [ "\$without" = 401 ] && [ "\$with" = 200 ]; then protected=yes; break; fi
  sleep 0.1
done
echo "protected=\$protected" >> "$WORK/served"
start=\$(date +%s%N)
source "$WORK/block4.sh"
for _ in \$(seq 1 100); do kill -0 \$CP_PID 2>/dev/null || kill -0 \$DP_PID 2>/dev/null || break; sleep 0.05; done
echo "stop_ms=\$(( (\$(date +%s%N) - start) / 1000000 ))" >> "$WORK/served"
kill -0 \$CP_PID 2>/dev/null && echo "cp_running=yes" >> "$WORK/served"
kill -0 \$DP_PID 2>/dev/null && echo "dp_running=yes" >> "$WORK/served"
true
SH
timeout 120 bash "$WORK/run.sh" || fail "the README's blocks did not run (exit $?)"

grep -q "served=yes" "$WORK/served" || fail "the route created by the README was not served: $(cat "$WORK/run/proxied.out")"
grep -q '"target":"/readme?x=1"' "$WORK/run/proxied.out" || fail "unexpected upstream answer: $(cat "$WORK/run/proxied.out")"
grep -q "protected=yes" "$WORK/served" || fail "key-auth did not protect the route: $(cat "$WORK/run/block3.out")"
grep -q '"x-consumer-username":"alice"' "$WORK/run/with-key.out" || fail "the upstream did not see the consumer: $(cat "$WORK/run/with-key.out")"
grep -q "running=yes" "$WORK/served" && fail "a process was still running 5 s after the README's kill"
[ -f "$CERTS/ca.key" ] && [ "$(stat -c %a "$CERTS")" = 700 ] || fail "certificate folder missing or not mode 0700"
[ -f "$DATA/portico.db" ] && [ "$(stat -c %a "$DATA")" = 700 ] || fail "database folder missing or not mode 0700"
echo "readme_test: ok ($(tr '\n' ' ' < "$WORK/served"))"
