#!/usr/bin/env bash
# Tests the Debian package on this machine (needs root): builds it (deploy/build-deb.sh), installs
# it with dpkg, checks the files, user and folders, runs `systemd-analyze verify` on both units,
# generates the cluster certificates into the packaged paths, then starts both binaries as the
# units would (their ExecStart, as their User, in their file-system sandbox: everything read-only
# but their StateDirectory/LogsDirectory, a private /tmp, InaccessiblePaths, no capabilities,
# LimitNOFILE) in a private network namespace, so the packaged ports cannot collide with anything.
# Sends a request through an example route, reloads, stops both with the units' KillSignal, purges the package and checks nothing is left. Everything it installed is
# removed at the end, also on failure. Prints PASS/FAIL per check; exit 0 when all passed, 1 when
# one failed, 77 when it cannot run here.
#   BUILD_DIR=build-deb   the build folder deploy/build-deb.sh uses (Release when it creates it)
#   DEB=path.deb          test this package instead of building one
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

skip() { echo "test-deb: SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i)"
for tool in dpkg dpkg-deb systemd-analyze ip unshare setpriv curl python3 logrotate; do
  command -v "$tool" >/dev/null || skip "$tool is missing (deploy/install-deps.sh installs it)"
done
# package_known: dpkg has the package in any state but purged (installed, half-installed,
# config-files...).
package_known() {
  local status
  status=$(dpkg-query -W -f='${Status}' portico 2>/dev/null) || return 1
  [ -n "$status" ] && [[ $status != *not-installed ]]
}
if package_known; then
  skip "a portico package is installed on this machine already; not touching it (dpkg --purge portico first)"
fi
# The purge deletes these: never run over someone's certificates or store (the README's manual
# steps default to /etc/portico/certs and /var/lib/portico).
for path in /etc/portico /var/lib/portico /var/lib/portico-dp /var/log/portico; do
  [ ! -e "$path" ] || skip "$path exists already; the test would delete it (move it away first)"
done

NS=ptd$(printf '%04x' $(( (RANDOM << 1 ^ $$) & 0xffff )))
# A container without CAP_SYS_ADMIN cannot make namespaces at all: that is a skip, not a failure.
probe=$(ip netns add "$NS" 2>&1) || skip "cannot create a network namespace here: $probe"
ip netns del "$NS"
WORK=$(mktemp -d /tmp/portico-test-deb.XXXXXX)
USER_EXISTED=0
getent passwd portico >/dev/null && USER_EXISTED=1
PIDS=() FAILED=0 STARTED=$SECONDS NS_MADE=0

cleanup() {
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ "$NS_MADE" -eq 0 ] || ip netns del "$NS" 2>/dev/null
  if package_known; then
    dpkg --purge portico >/dev/null 2>&1 || echo "test-deb: dpkg --purge portico failed in cleanup" >&2
  fi
  rm -rf /etc/portico /var/lib/portico /var/lib/portico-dp /var/log/portico
  if [ "$USER_EXISTED" -eq 0 ] && getent passwd portico >/dev/null; then
    userdel portico 2>/dev/null
    getent group portico >/dev/null && groupdel portico 2>/dev/null
  fi
  if [ "$FAILED" -ne 0 ]; then
    for log in "$WORK"/*.log; do [ -f "$log" ] && { echo "--- $(basename "$log") (last lines)"; tail -n 20 "$log"; }; done
  fi
  rm -rf "$WORK"
  echo "test-deb: $([ "$FAILED" -eq 0 ] && echo PASS || echo FAIL) in $(( SECONDS - STARTED )) s"
  exit "$FAILED"
}
trap cleanup EXIT
trap 'echo "test-deb: interrupted"; FAILED=1; exit 1' INT TERM

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
check() {  # check WHAT CMD...: PASS when CMD succeeds
  local what=$1; shift
  if "$@" > "$WORK/check.out" 2>&1; then pass "$what"; else fail "$what: $(head -c 400 "$WORK/check.out")"; fi
}
die() { echo "test-deb: $*" >&2; FAILED=1; exit 1; }
wait_until() {  # wait_until SECONDS CMD...
  local deadline=$(( SECONDS + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- build and install ---
if [ -z "${DEB:-}" ]; then
  bash deploy/build-deb.sh > "$WORK/build-deb.log" 2>&1 || die "deploy/build-deb.sh failed (see below)"
  DEB=$(tail -n 1 "$WORK/build-deb.log")
fi
[ -f "$DEB" ] || die "no package at '$DEB'"
echo "test-deb: $DEB ($(du -h "$DEB" | cut -f1))"
check "dpkg -i installs the package" dpkg -i "$DEB"
[ "$(dpkg-query -W -f='${Status}' portico 2>/dev/null)" = "install ok installed" ] || die "the package is not installed"
dpkg -L portico | sort > "$WORK/files"

for f in /usr/bin/portico-cp /usr/bin/portico-dp /lib/systemd/system/portico-cp.service \
         /lib/systemd/system/portico-dp.service /etc/portico/portico-cp.conf /etc/portico/portico-dp.conf \
         /etc/logrotate.d/portico /usr/share/doc/portico/README.Debian; do
  check "installed: $f" grep -qx "$f" "$WORK/files"
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' portico | awk 'NF {print $1}' | sort | tr '\n' ' ')
if [ "$conffiles" = "/etc/logrotate.d/portico /etc/portico/portico-cp.conf /etc/portico/portico-dp.conf " ]; then
  pass "conffiles: $conffiles"
else
  fail "conffiles are '$conffiles'"
fi
check "portico-cp --version runs" /usr/bin/portico-cp --version
check "portico-dp --version runs" /usr/bin/portico-dp --version
uid=$(id -u portico 2>/dev/null || echo none)
if [ "$uid" != none ] && [ "$uid" -lt 1000 ] && [ "$(getent passwd portico | cut -d: -f7)" = /usr/sbin/nologin ]; then
  pass "system user portico (uid $uid, no login shell)"
else
  fail "system user portico: uid $uid, $(getent passwd portico)"
fi
for entry in /var/lib/portico:750 /var/lib/portico-dp:750 /var/log/portico:750 /etc/portico/certs:700; do
  dir=${entry%:*} mode=${entry#*:}
  got=$(stat -c '%U:%G %a' "$dir" 2>/dev/null)
  if [ "$got" = "portico:portico $mode" ]; then pass "$dir is portico:portico $mode"; else fail "$dir is '$got'"; fi
done
for unit in portico-cp.service portico-dp.service; do
  out=$(systemd-analyze verify "/lib/systemd/system/$unit" 2>&1); rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then pass "systemd-analyze verify $unit: no warning"; else fail "systemd-analyze verify $unit ($rc): $out"; fi
  exposure=$(systemd-analyze security --offline=yes "/lib/systemd/system/$unit" 2>/dev/null |
             sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]* [A-Z]*\).*/\1/p')
  echo "      systemd-analyze security $unit: exposure $exposure"
done
logrotate_dry_run() {  # logrotate's debug run: no error, and the unit's user for su
  local out
  out=$(logrotate -d -s "$WORK/lr.state" /etc/logrotate.d/portico 2>&1)
  echo "$out"
  ! grep -qi error <<<"$out"
}
check "logrotate -d accepts /etc/logrotate.d/portico" logrotate_dry_run

# A forced rotation with the packaged file: renamed, a new file made for portico, no copy.
logrotate_forced() {
  runuser -u portico -- sh -c 'echo "{\"line\":1}" > /var/log/portico/access.log' &&
    logrotate -f -s "$WORK/lr.state" /etc/logrotate.d/portico &&
    [ "$(cat /var/log/portico/access.log.1)" = '{"line":1}' ] &&
    [ "$(stat -c '%U:%G %a %s' /var/log/portico/access.log)" = "portico:portico 640 0" ]
}
check "logrotate -f rotates /var/log/portico/access.log into access.log.1 and a new file" logrotate_forced
rm -f /var/log/portico/access.log*

# --- certificates into the packaged paths, as README.Debian says ---
check "gen-certs as portico into /etc/portico/certs" \
  runuser -u portico -- /usr/bin/portico-cp gen-certs /etc/portico/certs --cp-names localhost
# As the units' user: it must be able to read what the file names (and a log file check creates
# stays the service's).
for conf in cp dp; do
  check "portico-$conf check /etc/portico/portico-$conf.conf, as portico" \
    runuser -u portico -- /usr/bin/portico-$conf check "/etc/portico/portico-$conf.conf"
done

# --- run both as their units would ---
# unit_value UNIT KEY: the value of KEY= in the installed unit (the last one when repeated).
unit_value() { sed -n "s/^$2=//p" "/lib/systemd/system/$1" | tail -n 1; }
# run_unit UNIT LOG: starts UNIT's ExecStart in the namespace $NS, as its User, with its file-system
# sandbox rebuilt in a private mount namespace; appends the PID to PIDS.
run_unit() {
  local unit=$1 log=$2 user state logs inaccessible nofile exec_start setup
  user=$(unit_value "$unit" User)
  state=$(unit_value "$unit" StateDirectory)
  logs=$(unit_value "$unit" LogsDirectory)
  inaccessible=$(unit_value "$unit" InaccessiblePaths)
  nofile=$(unit_value "$unit" LimitNOFILE)
  exec_start=$(unit_value "$unit" ExecStart)
  if [ "$(unit_value "$unit" ProtectSystem)" != strict ] || [ "$(unit_value "$unit" PrivateTmp)" != yes ]; then
    fail "$unit: expected ProtectSystem=strict and PrivateTmp=yes"
    return 1
  fi
  # ProtectSystem=strict: every mount read-only but /dev, /proc and /sys; PrivateTmp; then the
  # unit's own directories writable again; InaccessiblePaths covered by mode-000 nodes.
  # shellcheck disable=SC2016 # expanded by the sh that builds the sandbox
  setup='set -e
    awk '\''{print $5}'\'' /proc/self/mountinfo | sort -u | while read -r m; do
      case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue;; esac
      mount -o remount,bind,ro "$m" 2>/dev/null || true
    done
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp
    install -d -m 000 /tmp/.inaccessible-dir && install -m 000 /dev/null /tmp/.inaccessible-file'
  local dir path
  for dir in ${state:+/var/lib/$state} ${logs:+/var/log/$logs}; do
    setup+="; mount --bind $dir $dir; mount -o remount,bind,rw $dir"
  done
  for path in $inaccessible; do
    path=${path#-}
    if [ -d "$path" ]; then setup+="; mount --bind /tmp/.inaccessible-dir $path"
    elif [ -e "$path" ]; then setup+="; mount --bind /tmp/.inaccessible-file $path"; fi
  done
  # LimitNOFILE, or the hard limit when this machine does not let root raise it that far.
  setup+="; ulimit -n $nofile 2>/dev/null || ulimit -n \$(ulimit -Hn)"
  # shellcheck disable=SC2086 # exec_start is the unit's command line, split as systemd splits it
  ip netns exec "$NS" unshare --mount --propagation private -- /bin/sh -c "$setup"'; exec "$@"' sh \
    setpriv --reuid="$user" --regid="$user" --init-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/portico LANG=C.UTF-8 $exec_start > "$WORK/$log" 2>&1 &
  PIDS+=($!)
}

ip netns add "$NS" || die "ip netns add $NS"
NS_MADE=1
ip -n "$NS" link set lo up || die "lo up in $NS"
in_ns() { ip netns exec "$NS" "$@"; }
mkdir -p "$WORK/www" && echo "hello through the packaged gateway" > "$WORK/www/hello.txt"
# Not through in_ns: a shell function in the background is a subshell, and its PID (what cleanup
# kills) is not the server's, which was left running.
ip netns exec "$NS" python3 -m http.server 9000 --bind 127.0.0.1 --directory "$WORK/www" > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)

run_unit portico-cp.service cp.log || die "cannot start portico-cp.service's command"
CP_PID=${PIDS[-1]}
wait_until 20 in_ns curl -fsS --max-time 2 http://127.0.0.1:8001/status || die "the CP's Admin API (127.0.0.1:8001) did not answer"
check "portico-cp runs from its unit as portico (pid $CP_PID)" test "$(stat -c %U "/proc/$CP_PID")" = portico
echo "      open files limit of the CP: $(awk '/Max open files/ {print $4}' "/proc/$CP_PID/limits") (unit: $(unit_value portico-cp.service LimitNOFILE))"
check "the CP created its store /var/lib/portico/portico.db" test -s /var/lib/portico/portico.db
check "PUT /services/example" in_ns curl -fsS --max-time 5 -o /dev/null -X PUT http://127.0.0.1:8001/services/example \
  -H 'Content-Type: application/json' -d '{"url":"http://127.0.0.1:9000"}'
check "PUT /routes/example" in_ns curl -fsS --max-time 5 -o /dev/null -X PUT http://127.0.0.1:8001/routes/example \
  -H 'Content-Type: application/json' -d '{"paths":["/example"],"service":{"name":"example"}}'

run_unit portico-dp.service dp.log || die "cannot start portico-dp.service's command"
DP_PID=${PIDS[-1]}
wait_until 30 in_ns curl -fsS --max-time 2 http://127.0.0.1:8100/status/ready ||
  die "the DP did not become ready on 127.0.0.1:8100"
check "portico-dp runs from its unit as portico (pid $DP_PID) and is ready" test "$(stat -c %U "/proc/$DP_PID")" = portico
body=$(in_ns curl -sS --max-time 5 http://127.0.0.1:8000/example/hello.txt 2>&1)
if [ "$body" = "hello through the packaged gateway" ]; then
  pass "GET http://127.0.0.1:8000/example/hello.txt reaches the upstream through the DP"
else
  fail "GET /example/hello.txt answered '${body:0:200}'"
fi
check "the DP wrote its snapshot cache in /var/lib/portico-dp" test -s /var/lib/portico-dp/snapshot.cur
# access_line FILE URI: FILE has a JSON access-log line for URI with status 200 (the writer flushes
# within milliseconds).
access_line() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, uri = sys.argv[1], sys.argv[2]
try:
    lines = open(path).read().splitlines()
except OSError:
    sys.exit(1)
ok = any(e.get("request", {}).get("uri") == uri and e.get("response", {}).get("status") == 200
         for e in (json.loads(l) for l in lines if l.strip()))
sys.exit(0 if ok else 1)
PY
}
check "the DP logs the request to /var/log/portico/access.log (proxy_access_log)" \
  wait_until 5 access_line /var/log/portico/access.log /example/hello.txt
# What the packaged logrotate rule does, with the SIGUSR1 its postrotate sends through systemctl.
rotate_and_reopen() {
  logrotate -f -s "$WORK/lr.state" /etc/logrotate.d/portico &&
    kill -USR1 "$DP_PID" &&
    sleep 0.5 &&
    in_ns curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:8000/example/hello.txt?after-rotation &&
    wait_until 5 access_line /var/log/portico/access.log "/example/hello.txt?after-rotation" &&
    access_line /var/log/portico/access.log.1 /example/hello.txt &&
    ! access_line /var/log/portico/access.log.1 "/example/hello.txt?after-rotation"
}
check "logrotate + SIGUSR1: the old lines in access.log.1, the next request in a new access.log" rotate_and_reopen
# The sandbox as the processes see it: their mount namespace, their user. Each denial is checked
# against the same access outside the sandbox, which portico has (it owns those files).
in_sandbox() { local pid=$1; shift; nsenter -t "$pid" -m -S "$(id -u portico)" -G "$(id -g portico)" "$@" >/dev/null 2>&1; }
denied_in_sandbox() { ! in_sandbox "$@"; }
outside_sandbox() { shift; runuser -u portico -- "$@" >/dev/null 2>&1; }
sandbox_check() {  # sandbox_check WHAT PID CMD...: CMD works as portico outside, fails inside
  local what=$1; shift
  if ! outside_sandbox "$@"; then fail "$what: the control (as portico, outside the sandbox) fails too"
  elif denied_in_sandbox "$@"; then pass "$what"
  else fail "$what: allowed"; fi
}
sandbox_check "the DP cannot read the CP's store (InaccessiblePaths)" "$DP_PID" cat /var/lib/portico/portico.db
sandbox_check "the DP cannot write /etc/portico/certs, which portico owns (ProtectSystem=strict)" \
  "$DP_PID" touch /etc/portico/certs/written-by-dp
sandbox_check "the CP cannot write /etc/portico/certs, which portico owns (ProtectSystem=strict)" \
  "$CP_PID" touch /etc/portico/certs/written-by-cp
sandbox_check "the CP cannot read the cluster CA key (InaccessiblePaths)" "$CP_PID" cat /etc/portico/certs/ca.key
sandbox_check "the DP cannot read the cluster CA key (InaccessiblePaths)" "$DP_PID" cat /etc/portico/certs/ca.key
rm -f /etc/portico/certs/written-by-*
check "the DP can write its folders" in_sandbox "$DP_PID" touch /var/lib/portico-dp/w /var/log/portico/w
check "the CP can write its folder" in_sandbox "$CP_PID" touch /var/lib/portico/w
rm -f /var/lib/portico-dp/w /var/log/portico/w /var/lib/portico/w

# ExecReload=/bin/kill -HUP $MAINPID on both.
kill -HUP "$CP_PID" "$DP_PID"
check "reload (SIGHUP): the CP reads its certificates again" wait_until 10 grep -q "cluster certificate reloaded" "$WORK/cp.log"
check "reload (SIGHUP): the DP reads its certificates again" wait_until 10 grep -q "cluster certificate reloaded" "$WORK/dp.log"

# Stop as systemd would: KillSignal, then up to TimeoutStopSec for the exit.
stop_unit() {  # stop_unit UNIT PID
  local signal timeout status
  signal=$(unit_value "$1" KillSignal) timeout=$(unit_value "$1" TimeoutStopSec)
  kill -s "${signal#SIG}" "$2"
  if wait_until "$timeout" bash -c "! kill -0 $2 2>/dev/null"; then
    wait "$2"; status=$?
    if [ "$status" -eq 0 ]; then pass "$1: $signal stops it, exit 0"; else fail "$1: $signal stops it with status $status"; fi
  else
    fail "$1: still running ${timeout} s after $signal"
  fi
}
stop_unit portico-dp.service "$DP_PID"
stop_unit portico-cp.service "$CP_PID"

# --- purge ---
check "systemctl enable (offline) both units" systemctl enable portico-cp.service portico-dp.service
check "dpkg --purge portico" dpkg --purge portico
left=""
while read -r f; do
  [ -d "$f" ] && continue   # folders shared with other packages (/usr/bin, ...)
  [ -e "$f" ] && left+=" $f"
done < "$WORK/files"
for d in /etc/portico /var/lib/portico /var/lib/portico-dp /var/log/portico \
         /etc/systemd/system/multi-user.target.wants/portico-cp.service \
         /etc/systemd/system/multi-user.target.wants/portico-dp.service; do
  [ -e "$d" ] || [ -L "$d" ] && left+=" $d"
done
if [ -z "$left" ]; then pass "after the purge nothing is left (files, folders, enablement links)"; else fail "left after the purge:$left"; fi
if package_known; then
  fail "dpkg still lists portico: $(dpkg-query -W -f='${Status}' portico)"
else
  pass "dpkg no longer knows the package"
fi
# cleanup (the EXIT trap) removes the user if this run created it, and prints the verdict.
