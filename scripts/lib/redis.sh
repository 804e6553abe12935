# Helpers for the scripts that start a local redis-server. Source it; it
# defines functions only.

# Succeeds when something accepts connections on 127.0.0.1:$1.
abexp_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a loopback TCP port that is free right now.
abexp_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# abexp_start_redis DIR PORT: starts a daemonized redis-server on
# 127.0.0.1:PORT with its data and AOF in DIR, and waits until it answers PING.
abexp_start_redis() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --appendonly yes --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" >/dev/null
  local i
  for i in $(seq 1 100); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "redis-server on 127.0.0.1:$port did not answer PING within 10s; see $dir/redis.log" >&2
  tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
  return 1
}

# abexp_stop_redis DIR PORT: stops the redis-server started by
# abexp_start_redis, by SIGTERM to the pid in DIR/redis.pid (a graceful
# shutdown that keeps the AOF), or else by SHUTDOWN on PORT (never NOSAVE).
abexp_stop_redis() {
  local dir=$1 port=$2 pid=""
  [ -f "$dir/redis.pid" ] && pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "redis-server" ]; then
    redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || true
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || return 0
  local i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "redis-server (pid $pid) did not stop within 10s; stop it with: kill $pid" >&2
}
