#!/usr/bin/env bash
# Builds the Debian package: a Release build of portico-cp and portico-dp in ./build-deb, then
# dpkg-deb around them and deploy/debian/* (units, settings, logrotate, maintainer scripts).
# Prints the path of the .deb on its last line.
#   BUILD_DIR=build-deb     build folder (configured as Release when it does not exist yet)
#   DEB_VERSION=<x.y.z>     package version (default: what `portico-cp --version` says)
#   OUT_DIR=$BUILD_DIR      where the .deb goes
#   SKIP_BUILD=1            package the binaries BUILD_DIR has, without running CMake
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=$(realpath -m "${BUILD_DIR:-build-deb}")
JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$ROOT/.cache/ccache}
SRC=$ROOT/deploy/debian

for tool in dpkg-deb dpkg-shlibdeps strip cmake; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (deploy/install-deps.sh)" >&2; exit 1; }
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build "$BUILD_DIR" -j "$JOBS" --target portico-cp portico-dp
fi
CP_BIN=$BUILD_DIR/control_plane/portico-cp
DP_BIN=$BUILD_DIR/data_plane/portico-dp

VERSION=${DEB_VERSION:-$("$CP_BIN" --version | awk '{print $2}')}
if ! [[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]]; then
  echo "build-deb: '$VERSION' is not a Debian version" >&2
  exit 1
fi
ARCH=$(dpkg --print-architecture)
OUT_DIR=$(realpath -m "${OUT_DIR:-$BUILD_DIR}")
STAGE=$BUILD_DIR/deb/portico_${VERSION}_${ARCH}
DEB=$OUT_DIR/portico_${VERSION}_${ARCH}.deb
# File dates in the package: the last commit's, so two builds of one commit give the same tree.
SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$OUT_DIR"
install -D -m 0755 -s "$CP_BIN" "$STAGE/usr/bin/portico-cp"
install -D -m 0755 -s "$DP_BIN" "$STAGE/usr/bin/portico-dp"
install -D -m 0644 "$SRC/portico-cp.service" "$STAGE/lib/systemd/system/portico-cp.service"
install -D -m 0644 "$SRC/portico-dp.service" "$STAGE/lib/systemd/system/portico-dp.service"
install -D -m 0644 "$SRC/portico-cp.conf" "$STAGE/etc/portico/portico-cp.conf"
install -D -m 0644 "$SRC/portico-dp.conf" "$STAGE/etc/portico/portico-dp.conf"
install -D -m 0644 "$SRC/portico.logrotate" "$STAGE/etc/logrotate.d/portico"
install -D -m 0644 "$SRC/copyright" "$STAGE/usr/share/doc/portico/copyright"
install -D -m 0644 "$SRC/README.Debian" "$STAGE/usr/share/doc/portico/README.Debian"
for script in postinst prerm postrm; do
  install -m 0755 "$SRC/$script" "$STAGE/DEBIAN/$script"
done
(cd "$STAGE" && find etc -type f | sed 's|^|/|' | sort) > "$STAGE/DEBIAN/conffiles"

# Library dependencies as dpkg-shlibdeps finds them (it wants a debian/control to read).
SHLIBS_WORK=$(mktemp -d)
trap 'rm -rf "$SHLIBS_WORK"' EXIT
mkdir "$SHLIBS_WORK/debian"
printf 'Source: portico\n\nPackage: portico\nArchitecture: any\n' > "$SHLIBS_WORK/debian/control"
if ! (cd "$SHLIBS_WORK" && dpkg-shlibdeps -O "$STAGE/usr/bin/portico-cp" "$STAGE/usr/bin/portico-dp" \
        > "$SHLIBS_WORK/out" 2> "$SHLIBS_WORK/err"); then
  echo "build-deb: dpkg-shlibdeps failed:" >&2
  cat "$SHLIBS_WORK/err" >&2
  exit 1
fi
SHLIBS=$(sed -n 's/^shlibs:Depends=//p' "$SHLIBS_WORK/out")
if [ -z "$SHLIBS" ]; then
  echo "build-deb: dpkg-shlibdeps found no library dependencies" >&2
  exit 1
fi

cat > "$STAGE/DEBIAN/control" <<EOF
Package: portico
Version: $VERSION
Architecture: $ARCH
Maintainer: Portico maintainers <maintainers@portico.invalid>
Section: net
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
Depends: adduser, $SHLIBS
Description: hybrid-mode API gateway (control plane and data plane)
 Portico is an API gateway with a Kong 3.x compatible Admin API. portico-cp
 keeps the configuration in SQLite and streams versioned snapshots over
 mutual-TLS gRPC to the portico-dp data planes, which proxy HTTP/1.1, HTTP/2,
 gRPC and WebSocket traffic and keep serving when the control plane is away.
 .
 The package ships both binaries, hardened systemd units, settings in
 /etc/portico and a logrotate file. The services are not started on install:
 see /usr/share/doc/portico/README.Debian.
EOF
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) \
  > "$STAGE/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "build-deb: $(du -h "$DEB" | cut -f1) package, contents:"
dpkg-deb --contents "$DEB" | awk '{print "  " $1, $6}'
echo "$DEB"
