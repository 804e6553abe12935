#!/usr/bin/env bash
# Installs dependencies (redis-server among them), checks that every C++
# file is laid out as .clang-format says (scripts/check-format.sh), builds,
# and runs every test with ctest. Tests that need Redis start their own redis-server on a free
# loopback port (server/testing/redis_process.h) and stop it afterwards, so tests never
# share data. Exits non-zero if any test fails or is skipped.
#
# Then the Bazel build (bazel-alternative/README.md): the drift check that
# both builds name the same sources, `bazel build //...` and `bazel test
# //...` (the unit tests that need no Redis).
#
# Then the sanitizers (docs/sanitizers.md): scripts/sanitize.sh builds
# everything with Clang, ASan + UBSan and -Wthread-safety -Werror
# (build-clang) and runs the same ctest suite there; a sanitizer report fails
# the run.
#
# Then fuzzing (docs/fuzzing.md): scripts/fuzz.sh runs every fuzz target's
# seed corpus as a regression test and fuzzes each target briefly, two at a
# time, in the same Clang build.
#
# Extra arguments go to ctest, e.g. ./scripts/test.sh -R bucketing
# Environment: ABEXP_TEST_JOBS (default 2), ABEXP_TEST_TIMEOUT seconds per
# test (default 300), ABEXP_TEST_BAZEL=0 to skip the Bazel part,
# ABEXP_TEST_SANITIZE=0 to skip the sanitizer build and its ctest run (the
# extra ctest arguments apply to it too), ABEXP_TEST_FUZZ=0 to skip fuzzing, ABEXP_TEST_FUZZ_SECONDS fuzzing time per
# fuzz target (default 30),
# ABEXP_JOBS (Bazel's --jobs, default: all cores, as for CMake).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

./scripts/install-deps.sh

# A layout problem fails the run, but after every test has run.
format_rc=0
scripts/check-format.sh || format_rc=$?

./scripts/build.sh

ctest_log=$(mktemp "${TMPDIR:-/tmp}/abexp-ctest.XXXXXX")
trap 'rm -f "$ctest_log"' EXIT

echo "test: running ctest"
set +e
ctest --test-dir "${ABEXP_BUILD_DIR:-build}" --output-on-failure --no-tests=error -j "${ABEXP_TEST_JOBS:-2}" \
  --timeout "${ABEXP_TEST_TIMEOUT:-300}" "$@" 2>&1 | tee "$ctest_log"
rc=${PIPESTATUS[0]}
set -e
echo "test: ctest exited $rc"
# ctest counts a skipped test as passed, but no test here may skip.
if [ "$rc" = 0 ] && grep -q '\*\*\*Skipped' "$ctest_log"; then
  echo "test: FAILED: these tests were skipped, and a skipped test proves nothing:" >&2
  grep '\*\*\*Skipped' "$ctest_log" >&2
  rc=1
fi

if [ "${ABEXP_TEST_SANITIZE:-1}" != 0 ]; then
  echo "test: sanitizers: Clang build with ASan + UBSan and -Wthread-safety -Werror, then ctest in it"
  SECONDS=0
  sanitize_rc=0
  scripts/sanitize.sh "$@" || sanitize_rc=$?
  echo "test: sanitizers exited $sanitize_rc after ${SECONDS}s"
  [ "$rc" != 0 ] || rc=$sanitize_rc
fi

if [ "${ABEXP_TEST_FUZZ:-1}" != 0 ]; then
  echo "test: fuzzing: each target's corpus, then ${ABEXP_TEST_FUZZ_SECONDS:-30}s of fuzzing per target, two at a time"
  SECONDS=0
  fuzz_rc=0
  scripts/fuzz.sh --seconds "${ABEXP_TEST_FUZZ_SECONDS:-30}" --jobs 2 || fuzz_rc=$?
  echo "test: fuzzing exited $fuzz_rc after ${SECONDS}s"
  [ "$rc" != 0 ] || rc=$fuzz_rc
fi

if [ "${ABEXP_TEST_BAZEL:-1}" != 0 ]; then
  echo "test: Bazel: drift check, build and unit tests (bazel-alternative/)"
  SECONDS=0
  bazel_rc=0
  bazel_jobs=--jobs=${ABEXP_JOBS:-$(nproc)}
  bazel-alternative/check-sources.sh &&
    bazel-alternative/bazel.sh build "$bazel_jobs" //... &&
    bazel-alternative/bazel.sh test "$bazel_jobs" //... || bazel_rc=$?
  if [ "$bazel_rc" = 0 ]; then
    # As for ctest: Bazel reports a test that skips as PASSED.
    testlogs=$(bazel-alternative/bazel.sh info bazel-testlogs 2>/dev/null) &&
      bazel_tests=$(bazel-alternative/bazel.sh query 'tests(//...)' 2>/dev/null) || bazel_rc=$?
    for t in ${bazel_tests:-}; do
      log="$testlogs/${t#//:}/test.log"
      if [ ! -f "$log" ] || grep -q '^\[  SKIPPED \]' "$log"; then
        echo "test: FAILED: $t skipped tests (or left no log), and a skipped test proves nothing: $log" >&2
        bazel_rc=1
      fi
    done
  fi
  # The outputs stay for the next, incremental, run; the server need not.
  bazel-alternative/bazel.sh shutdown || true
  echo "test: Bazel part exited $bazel_rc after ${SECONDS}s"
  [ "$rc" != 0 ] || rc=$bazel_rc
fi
if [ "$format_rc" != 0 ]; then
  echo "test: FAILED: scripts/check-format.sh found files not laid out as .clang-format says (see above)" >&2
  [ "$rc" != 0 ] || rc=$format_rc
fi
exit "$rc"
