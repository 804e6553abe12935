#!/usr/bin/env bash
# Builds everything in the Clang build (scripts/clang-build.sh: ASan + UBSan,
# -Wthread-safety -Werror) and runs the ctest suite there: the unit tests and
# the end-to-end tests, whose abexp-server and abexp processes are the
# sanitized binaries of the same build (docs/sanitizers.md).
#
# A sanitizer report fails the run, wherever it comes from: every sanitized
# process writes its reports to <build>/sanitizer-logs/ (ASan and UBSan
# log_path), so a report from a server child that a test only SIGTERMs
# counts too. ASan stops at its first error (halt_on_error), UBSan was
# compiled not to recover (-fno-sanitize-recover=undefined), and LeakSanitizer
# checks every process at exit. Prints each report and exits non-zero when
# ctest failed or any report was written.
#
# Usage: scripts/sanitize.sh [ctest args...]   e.g. scripts/sanitize.sh -R spool
# Environment: ABEXP_CLANG_BUILD_DIR (default build-clang), ABEXP_JOBS (build
# parallelism), ABEXP_TEST_JOBS (ctest -j, default 2), ABEXP_TEST_TIMEOUT
# seconds per test (default 600: sanitized code runs about 2-3x slower).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

build=${ABEXP_CLANG_BUILD_DIR:-build-clang}
export ABEXP_CLANG_BUILD_DIR=$build
scripts/clang-build.sh

logs="$(cd "$build" && pwd)/sanitizer-logs"
rm -rf "$logs"
mkdir -p "$logs"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$logs/report"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/report"

ctest_log="$build/ctest.log"
echo "sanitize: running ctest in $build (reports go to $logs/)"
SECONDS=0
set +e
ctest --test-dir "$build" --output-on-failure --no-tests=error -j "${ABEXP_TEST_JOBS:-2}" \
  --timeout "${ABEXP_TEST_TIMEOUT:-600}" "$@" 2>&1 | tee "$ctest_log"
rc=${PIPESTATUS[0]}
set -e
echo "sanitize: ctest exited $rc after ${SECONDS}s"
# As in scripts/test.sh: a skipped test proves nothing.
if [ "$rc" = 0 ] && grep -q '\*\*\*Skipped' "$ctest_log"; then
  echo "sanitize: FAILED: these tests were skipped:" >&2
  grep '\*\*\*Skipped' "$ctest_log" >&2
  rc=1
fi

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
  echo "sanitize: FAILED: $(printf '%s\n' "$reports" | wc -l) sanitizer reports:" >&2
  for f in $reports; do
    echo "=== $f" >&2
    cat "$f" >&2
  done
  [ "$rc" != 0 ] || rc=1
fi
exit "$rc"
