#!/usr/bin/env bash
# bench/h2load.sh: R1 (Assign QPS / echo QPS, closed loop, max) measured by
# h2load (nghttp2-client), a load generator that is not abexp's own, with
# one realistic AssignRequest for bench/experiments-50.yaml.
#
#   bench/h2load.sh [--rounds N] [--requests N] [--abexp HOST:PORT --echo HOST:PORT]
#
# Without --abexp/--echo it starts, as bench/run.sh does, a redis-server,
# abexp-server with bench/experiments-50.yaml recording into it, and
# abexp-echo-server, all on core 0, and runs h2load on core 1 (with 2 or
# more cores). bench/assign_request.py writes the request (a 5-byte gRPC
# prefix and the serialized message) and first sends it to both servers
# with a real gRPC client, which must answer OK: h2load itself only sees
# HTTP 200. Then, for --rounds rounds (default 3) in turn, echo and abexp
# each get --requests calls (default 100000) over 4 connections with 32
# streams each:
#
#   h2load -n N -c 4 -m 32 -t 1 -H 'content-type: application/grpc' \
#     -H 'te: trailers' -d FILE http://ADDR/abexp.v1.AssignmentService/Assign
#
# Prints each round's req/s and the ratio of the medians; when it started
# the servers, also each server's CPU time per call (user + system, all its
# threads, from /proc), which a busy machine moves much less than req/s.
# Needs the build
# (ABEXP_BUILD_DIR, default build/), h2load, redis-server, python3-grpcio
# and protoc (scripts/install-deps.sh installs them).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ABEXP_BUILD_DIR:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
py=/usr/bin/python3

rounds=3
requests=100000
abexp_addr=""
echo_addr=""
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --requests) requests=${2:?--requests needs a number}; shift ;;
    --abexp) abexp_addr=${2:?--abexp needs HOST:PORT}; shift ;;
    --echo) echo_addr=${2:?--echo needs HOST:PORT}; shift ;;
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/h2load.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if { [ -n "$abexp_addr" ] && [ -z "$echo_addr" ]; } ||
   { [ -z "$abexp_addr" ] && [ -n "$echo_addr" ]; }; then
  echo "bench/h2load.sh: pass both --abexp and --echo, or neither" >&2
  exit 2
fi
if ! command -v h2load >/dev/null; then
  echo "bench/h2load.sh: h2load is not installed (apt-get install nghttp2-client)" >&2
  exit 1
fi

if [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 0)
  load_pin=(taskset -c 1)
else
  server_pin=()
  load_pin=()
fi

work=$(mktemp -d /tmp/abexp-h2load.XXXXXX)
pids=()
redis_port=""
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$redis_port" ]; then
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a server that prints "listening on HOST:PORT"; sets $addr.
start() {
  local name=$1; shift
  "${server_pin[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=("$!")
  addr=""
  for _ in $(seq 1 200); do
    addr=$(grep -o 'listening on [0-9.:]*' "$work/$name.out" | awk '{print $3}' || true)
    [ -n "$addr" ] && return 0
    sleep 0.05
  done
  echo "bench/h2load.sh: $name did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}

if [ -z "$abexp_addr" ]; then
  redis_port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${server_pin[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 \
    --dir "$work" --save '' --appendonly yes --appendfsync everysec \
    --daemonize yes --logfile "$work/redis.log" >/dev/null
  start abexp "$build/bin/abexp-server" --config "$root/bench/experiments-50.yaml" \
    --listen 127.0.0.1:0 --redis "127.0.0.1:$redis_port" --spool_dir "$work/spool"
  abexp_addr=$addr
  abexp_pid=${pids[-1]}
  start echo "$build/bin/abexp-echo-server" --listen 127.0.0.1:0
  echo_addr=$addr
  echo_pid=${pids[-1]}
fi

request=$work/assign-request.bin
"$py" "$root/bench/assign_request.py" --out "$request" \
  --check "$echo_addr" --check "$abexp_addr" >&2

# CPU seconds x 100 (clock ticks) used so far by process $1; 0 when it is
# not ours to read (servers given by address).
ticks() {
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
    awk '{print $14 + $15}' "/proc/$1/stat"
  else
    echo 0
  fi
}

# One h2load run against $1 (server pid $2, or ""); prints req/s and the
# server's CPU microseconds per call. Fails unless every request got HTTP 200.
h2() {
  local out t0 t1
  t0=$(ticks "$2")
  out=$("${load_pin[@]}" h2load -n "$requests" -c 4 -m 32 -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$request" \
    "http://$1/abexp.v1.AssignmentService/Assign")
  local ok
  ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
  if [ "$ok" != "$requests" ]; then
    echo "bench/h2load.sh: only ${ok:-0} of $requests calls to $1 got HTTP 200:" >&2
    echo "$out" >&2
    exit 1
  fi
  t1=$(ticks "$2")
  echo "$(echo "$out" | awk '/^finished in/ {print $4}')" \
    "$(awk -v t="$((t1 - t0))" -v n="$requests" 'BEGIN {printf "%.1f", t * 10000 / n}')"
}

declare -a echo_rps abexp_rps echo_cpu abexp_cpu
for r in $(seq 1 "$rounds"); do
  read -r rps cpu < <(h2 "$echo_addr" "${echo_pid:-}")
  echo_rps+=("$rps"); echo_cpu+=("$cpu")
  read -r rps cpu < <(h2 "$abexp_addr" "${abexp_pid:-}")
  abexp_rps+=("$rps"); abexp_cpu+=("$cpu")
  echo "round $r: echo ${echo_rps[-1]} req/s, Assign ${abexp_rps[-1]} req/s" \
    "(server CPU per call: echo ${echo_cpu[-1]} us, abexp ${abexp_cpu[-1]} us)" >&2
done
"$py" - "${echo_rps[*]}" "${abexp_rps[*]}" "${echo_cpu[*]}" "${abexp_cpu[*]}" <<'EOF'
import statistics, sys
echo, assign, echo_cpu, assign_cpu = (
    [float(x) for x in arg.split()] for arg in sys.argv[1:5])
rounds = ", ".join(f"{a / e:.2f}" for e, a in zip(echo, assign))
e, a = statistics.median(echo), statistics.median(assign)
print(f"R1 by h2load: Assign {a:.0f} req/s / echo {e:.0f} req/s = {a / e:.2f} "
      f"(medians of {len(echo)} alternating rounds; per round {rounds})")
ec, ac = statistics.median(echo_cpu), statistics.median(assign_cpu)
if ac > 0:
    print(f"Server CPU per call: echo {ec:.1f} us / abexp {ac:.1f} us = {ec / ac:.2f}")
EOF
