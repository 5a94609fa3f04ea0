#!/bin/sh
# A PostgreSQL 15 server for the tests (one for the whole CTest run: the fixture `postgres`).
#   postgres_fixture.sh start STATE_DIR   initdb into a fresh temporary directory, start the server
#                                         on a free 127.0.0.1 port (socket in that directory),
#                                         write the port to STATE_DIR/port, the data directory to
#                                         STATE_DIR/data_dir and the server's PID to STATE_DIR/pid
#   postgres_fixture.sh stop STATE_DIR    stop that server (pg_ctl stop -m fast) and remove it all
#   postgres_fixture.sh halt STATE_DIR    stop the server but keep its data (a database outage)
#   postgres_fixture.sh resume STATE_DIR  start it again on the same port with the same data
# Never halt the shared server of the CTest fixture: a test that needs an outage starts its own.
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user.
set -eu
action=${1:?usage: postgres_fixture.sh start|stop|halt|resume STATE_DIR}
state=${2:?usage: postgres_fixture.sh start|stop|halt|resume STATE_DIR}
bindir=${PORTICO_PG_BINDIR:-/usr/lib/postgresql/15/bin}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Tests trade durability for speed; PORTICO_PG_DURABLE=1 (the benchmarks) keeps PostgreSQL's
# defaults (fsync, synchronous_commit, full_page_writes on).
server_options() {
  if [ "${PORTICO_PG_DURABLE:-0}" = 1 ]; then
    echo "-p $1 -k $2 -c listen_addresses=127.0.0.1 -c max_connections=300"
  else
    echo "-p $1 -k $2 -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
  fi
}

case "$action" in
start)
  if [ -f "$state/data_dir" ]; then "$0" stop "$state" || true; fi
  mkdir -p "$state"
  rm -f "$state/port" "$state/data_dir" "$state/pid"
  dir=$(mktemp -d /tmp/portico_pg_XXXXXX)
  chmod 755 "$dir"
  mkdir "$dir/data"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir" "$dir/data"; fi
  echo "$dir" > "$state/data_dir"
  as_server_user "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; exit 1; }
  # A port picked free may be taken before the server binds it: try a few.
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "$(server_options "$port" "$dir")" \
        start >/dev/null 2>&1; then
      echo "$port" > "$state/port"
      head -1 "$dir/data/postmaster.pid" > "$state/pid"
      echo "PostgreSQL on 127.0.0.1:$port (data in $dir)"
      exit 0
    fi
  done
  cat "$dir/server.log" >&2 || true
  exit 1
  ;;
stop)
  [ -f "$state/data_dir" ] || exit 0
  dir=$(cat "$state/data_dir")
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_server_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
      pid=$(cat "$state/pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; }
  fi
  case "$dir" in /tmp/portico_pg_*) rm -rf "$dir" ;; esac
  rm -f "$state/port" "$state/data_dir" "$state/pid"
  ;;
halt)
  dir=$(cat "$state/data_dir")
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
  ;;
resume)
  dir=$(cat "$state/data_dir")
  port=$(cat "$state/port")
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$(server_options "$port" "$dir")" \
    start >/dev/null
  head -1 "$dir/data/postmaster.pid" > "$state/pid"
  ;;
*)
  echo "usage: postgres_fixture.sh start|stop|halt|resume STATE_DIR" >&2
  exit 2
  ;;
esac
