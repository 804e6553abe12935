#!/usr/bin/env bash
# Runs abexp locally: installs dependencies, builds, starts Redis on
# 127.0.0.1 (data and AOF in .run/redis/) and abexp-server in the foreground
# with examples/experiments.yaml. Ctrl-C or SIGTERM stops both; Redis keeps
# its AOF, so recorded events survive a restart. Calls recorded while Redis
# is down wait in the server's spool (.run/spool/) and are replayed when it
# is back, also on the next run.
#
# Environment:
#   ABEXP_PORT        gRPC port for abexp-server (default 50051)
#   ABEXP_REDIS_PORT  Redis port (default 6379; a free port is picked if busy)
#   ABEXP_CONFIG      experiment config (default examples/experiments.yaml)
#   ABEXP_HTTP_PORT   port of the operators' HTTP listener: /metrics,
#                     /healthz, /readyz (default 9464)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib/redis.sh

./scripts/install-deps.sh
./scripts/build.sh

build_dir=${ABEXP_BUILD_DIR:-build}
port=${ABEXP_PORT:-50051}
http_port=${ABEXP_HTTP_PORT:-9464}
config=${ABEXP_CONFIG:-examples/experiments.yaml}
redis_dir=$root/.run/redis
redis_port=${ABEXP_REDIS_PORT:-6379}

if [ ! -f "$config" ]; then
  echo "run: config $config not found; set ABEXP_CONFIG=path/to/experiments.yaml" >&2
  exit 1
fi
if abexp_port_busy "$port"; then
  echo "run: 127.0.0.1:$port is already in use; stop what listens there or set ABEXP_PORT" >&2
  exit 1
fi
if abexp_port_busy "$http_port"; then
  echo "run: 127.0.0.1:$http_port (metrics and health) is already in use; stop what listens there or set ABEXP_HTTP_PORT" >&2
  exit 1
fi

# One run.sh per checkout: the Redis data directory is shared.
mkdir -p "$root/.run"
if [ -f "$root/.run/run.pid" ]; then
  other=$(cat "$root/.run/run.pid" 2>/dev/null || true)
  if [ -n "$other" ] && [ "$other" != "$$" ] && kill -0 "$other" 2>/dev/null &&
     grep -q 'run\.sh' "/proc/$other/cmdline" 2>/dev/null; then
    echo "run: another scripts/run.sh (pid $other) is running in this checkout; stop it first (Ctrl-C or kill $other)" >&2
    exit 1
  fi
fi
echo "$$" > "$root/.run/run.pid"

server_pid=""
redis_started=0
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$redis_started" = 1 ]; then
    echo "run: stopping redis-server on 127.0.0.1:$redis_port (AOF kept in .run/redis/)"
    abexp_stop_redis "$redis_dir" "$redis_port"
  fi
  rm -f "$root/.run/run.pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A Redis left running by an earlier run.sh that was killed: stop it first,
# so it does not hold the data directory.
if [ -f "$redis_dir/redis.pid" ]; then
  old=$(cat "$redis_dir/redis.pid" 2>/dev/null || true)
  if [ -n "$old" ] && [ "$(cat "/proc/$old/comm" 2>/dev/null)" = "redis-server" ]; then
    echo "run: stopping the Redis (pid $old) an earlier run left behind"
    kill -TERM "$old"
    while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
  fi
fi

if abexp_port_busy "$redis_port"; then
  busy=$redis_port
  redis_port=$(abexp_free_port)
  echo "run: Redis port $busy is busy; using $redis_port"
fi
echo "run: starting redis-server on 127.0.0.1:$redis_port (data in .run/redis/, appendonly yes)"
redis_started=1
abexp_start_redis "$redis_dir" "$redis_port"

# Event recording reads this once abexp-server accepts --redis (a later
# issue); until then the flag is passed only if the server lists it.
export ABEXP_REDIS_ADDR=127.0.0.1:$redis_port
server_args=(--config="$config" --listen="127.0.0.1:$port"
             --spool_dir="$root/.run/spool"
             --http_listen="127.0.0.1:$http_port")
server_help=$("$build_dir/bin/abexp-server" --helpfull 2>&1 || true)
if grep -qE '(^|[[:space:]])--redis([[:space:]=]|$)' <<<"$server_help"; then
  server_args+=(--redis="$ABEXP_REDIS_ADDR")
fi

cat <<MSG

abexp-server: starting on 127.0.0.1:$port with $config (Redis at $ABEXP_REDIS_ADDR)
Try, from another terminal:
  $build_dir/bin/abexp assign --server 127.0.0.1:$port --id user_id=u-123 --id device_id=d-9 --attr country=CN --attr platform=ios --attr app_version=5.3.0
  $build_dir/bin/abexp explain one_page_checkout --server 127.0.0.1:$port --id user_id=u-123 --attr app_version=5.3.0
  $build_dir/bin/abexp experiments list --server 127.0.0.1:$port
  curl -s 127.0.0.1:$http_port/metrics | grep ^abexp_rpc   # Prometheus metrics (docs/operations.md)
  curl -s 127.0.0.1:$http_port/readyz
Reload the config after editing it: kill -HUP <abexp-server pid>. Stop: Ctrl-C.

MSG

# In the background so that our traps run as soon as a signal arrives; the
# cleanup forwards SIGTERM to the server.
"$build_dir/bin/abexp-server" "${server_args[@]}" &
server_pid=$!
set +e
wait "$server_pid"
rc=$?
set -e
server_pid=""
exit "$rc"
