#!/usr/bin/env bash
# Configures the one Clang build that scripts/sanitize.sh and scripts/fuzz.sh
# share (docs/sanitizers.md), then builds the given targets (everything when
# none are named):
#   - AddressSanitizer and UndefinedBehaviorSanitizer on all code compiled
#     here; UBSan does not recover, so its first report ends the process;
#   - -fsanitize=fuzzer-no-link: libFuzzer's coverage hooks, so the fuzz
#     targets (tests/fuzz/, -DABEXP_FUZZ=ON) link against the same objects;
#     only they link libFuzzer itself, the tests and servers do not;
#   - -Wthread-safety (and all of abexp::warnings) as errors on abexp's own
#     targets (-DABEXP_WERROR=ON).
# Debian's libraries (gRPC, Abseil, protobuf, ...) are not instrumented.
#
# Usage: scripts/clang-build.sh [target...]
# Environment: ABEXP_CLANG_BUILD_DIR (default build-clang), ABEXP_JOBS (build
# parallelism, default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${ABEXP_CLANG_BUILD_DIR:-build-clang}
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
echo "clang-build: configuring $build (clang++, ASan + UBSan + libFuzzer coverage, -Werror)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
  -DABEXP_WERROR=ON -DABEXP_FUZZ=ON >/dev/null
SECONDS=0
ninja -C "$build" -j "${ABEXP_JOBS:-$(nproc)}" "$@"
echo "clang-build: built ${*:-everything} in ${SECONDS}s"
