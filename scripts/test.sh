#!/usr/bin/env bash
# Installs dependencies (redis-server among them), builds, and runs every test
# with ctest. Tests that need Redis start their own redis-server on a free
# loopback port (tests/redis_process.h) and stop it afterwards, so tests never
# share data. Exits non-zero if any test fails or is skipped.
#
# Extra arguments go to ctest, e.g. ./scripts/test.sh -R bucketing
# Environment: ABEXP_TEST_JOBS (default 2), ABEXP_TEST_TIMEOUT seconds per
# test (default 300).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

./scripts/install-deps.sh
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
  exit 1
fi
exit "$rc"
