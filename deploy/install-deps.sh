#!/usr/bin/env bash
# Installs the Debian 12 packages Portico builds and tests with, if any is missing. Needs root.
set -euo pipefail
PACKAGES=(
  cmake g++ make ninja-build pkg-config ccache openssl curl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev libsqlite3-dev libuv1-dev libc-ares-dev node-llhttp zlib1g-dev libre2-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  libhiredis-dev redis-server
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
