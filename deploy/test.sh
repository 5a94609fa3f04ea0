#!/usr/bin/env bash
# Command 2 of the quick start: installs what is missing, builds, runs every test (unit + integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/build.sh
# Integration tests start real binaries on loopback with ephemeral ports; two at a time is safe.
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "${TEST_JOBS:-2}" --timeout 300
# The Debian package (deploy/test-deb.sh): packages the binaries just built (no second, Release
# build), installs, runs and purges it. Needs root (skipped otherwise); SKIP_DEB=1 leaves it out.
if [ "${SKIP_DEB:-0}" != 1 ]; then
  BUILD_DIR=${BUILD_DIR:-build} bash deploy/test-deb.sh || [ $? -eq 77 ]
fi
# Fuzz targets (tests/fuzz): kept crashers, then FUZZ_SECONDS (30) of fuzzing each, clang build in
# ./build-fuzz. SKIP_FUZZ=1 leaves them out (e.g. for a quick local run).
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  bash deploy/fuzz.sh
fi
