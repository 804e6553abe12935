#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test with ctest against a
# throwaway redis-server on a free loopback port (exported to the tests as
# ABEXP_TEST_REDIS=127.0.0.1:PORT). Exits with ctest's status.
#
# Extra arguments go to ctest, e.g. ./scripts/test.sh -R bucketing
# Environment: ABEXP_TEST_JOBS (default 2), ABEXP_TEST_TIMEOUT seconds per
# test (default 300).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib/redis.sh

./scripts/install-deps.sh
./scripts/build.sh

redis_dir=$(mktemp -d "${TMPDIR:-/tmp}/abexp-test-redis.XXXXXX")
redis_port=$(abexp_free_port)
redis_started=0
cleanup() {
  if [ "$redis_started" = 1 ]; then abexp_stop_redis "$redis_dir" "$redis_port"; fi
  rm -rf "$redis_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "test: starting a throwaway redis-server on 127.0.0.1:$redis_port"
redis_started=1
abexp_start_redis "$redis_dir" "$redis_port"
export ABEXP_TEST_REDIS=127.0.0.1:$redis_port

echo "test: running ctest"
set +e
ctest --test-dir "${ABEXP_BUILD_DIR:-build}" --output-on-failure --no-tests=error -j "${ABEXP_TEST_JOBS:-2}" \
  --timeout "${ABEXP_TEST_TIMEOUT:-300}" "$@"
rc=$?
set -e
echo "test: ctest exited $rc"
exit "$rc"
