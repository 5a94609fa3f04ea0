#!/usr/bin/env bash
# Installs the Debian 12 packages Portico builds and tests with, if any is missing. Needs root.
set -euo pipefail
PACKAGES=(
  cmake g++ make ninja-build pkg-config ccache openssl curl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev libsqlite3-dev libuv1-dev libc-ares-dev node-llhttp zlib1g-dev libre2-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  libhiredis-dev redis-server
  # the PostgreSQL store (libpq) and the server its tests start (tests/postgres_fixture.sh)
  libpq-dev postgresql
  libyaml-dev
  libnghttp2-dev nghttp2-client python3-grpcio python3-websockets python3-h2
  python3 prometheus
  clang libclang-rt-14-dev
  # deploy/build-deb.sh, test-deb.sh (dpkg-shlibdeps, systemd-analyze, logrotate), netns-demo.sh (ip, nft)
  dpkg-dev adduser iproute2 nftables logrotate systemd
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# Tests start their own PostgreSQL in a temporary directory (tests/postgres_fixture.sh): Debian's
# package must not create (and start) a cluster of its own on port 5432. postgresql-common comes
# first so that its createcluster.conf says so before the server package's postinst runs.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  echo "install-deps: postgresql without a main cluster (tests run their own server)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql-common
  $SUDO pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster false
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Tests start their own redis-server on a free loopback port: the system one the package starts
# (when systemd runs) is not needed, so a fresh install does not leave it running.
if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  echo "install-deps: stopping and disabling the system redis-server (tests run their own)"
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
# prometheus is installed for its promtool (the metrics tests check the exposition with it); its
# server is not needed either.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  echo "install-deps: stopping and disabling the system prometheus (only promtool is used)"
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
