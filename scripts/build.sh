#!/usr/bin/env bash
# Configures and builds abexp into build/ (Ninja, RelWithDebInfo). Binaries
# land in build/bin/ (abexp-server, abexp) and test binaries in build/tests/.
# Environment: ABEXP_BUILD_DIR (default build), ABEXP_JOBS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${ABEXP_BUILD_DIR:-build}
jobs=${ABEXP_JOBS:-$(nproc)}

if [ -f "$build_dir/CMakeCache.txt" ] &&
   ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  echo "build: $build_dir/ was configured with another generator; remove it (rm -rf $build_dir) and rerun" >&2
  exit 1
fi

echo "build: configuring $build_dir/ (Ninja, RelWithDebInfo)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "build: compiling with $jobs jobs"
SECONDS=0
cmake --build "$build_dir" -j "$jobs"
echo "build: done in ${SECONDS}s: $build_dir/bin/abexp-server, $build_dir/bin/abexp"
