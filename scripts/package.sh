#!/usr/bin/env bash
# Builds abexp's Debian packages with CPack from the build in build/ (builds
# it first with scripts/build.sh when it is missing):
#   abexp_VERSION_ARCH.deb      abexp-server and abexp in /usr/bin, the
#                               systemd unit abexp-server.service, the
#                               default config /etc/abexp/experiments.yaml
#   abexp-dev_VERSION_ARCH.deb  the C++ client library, its headers, the
#                               CMake package and abexp-client.pc
# VERSION is CMakeLists.txt's project(VERSION). The packages land in
# packages/ (or the directory given as the first argument).
#
# Usage: scripts/package.sh [OUT_DIR]
# Environment: ABEXP_BUILD_DIR (default build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

build_dir=${ABEXP_BUILD_DIR:-build}
out=${1:-packages}
if [ ! -f "$build_dir/CPackConfig.cmake" ]; then
  ./scripts/build.sh
else
  cmake --build "$build_dir" --target abexp-server abexp abexp_client
fi
mkdir -p "$out"
rm -f "$out"/abexp_*.deb "$out"/abexp-dev_*.deb
out=$(cd "$out" && pwd)
# dpkg-shlibdeps (package dpkg-dev) computes the runtime dependencies.
cpack --config "$build_dir/CPackConfig.cmake" -G DEB -B "$out"
rm -rf "$out/_CPack_Packages"
echo "package: built"
ls -1 "$out"/*.deb
