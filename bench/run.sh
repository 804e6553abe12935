#!/usr/bin/env bash
# bench/run.sh: measures abexp against its ceilings (gRPC itself, Redis
# itself, raw XXH3-64) and prints the issue-5 table R1..R8 as markdown, then
# issue 15's R10 (Assign and echo over TLS with a token; bench/r10.sh),
# issue 16's M1 (what the operators' metrics cost Assign; bench/m1.sh),
# issue 17's R11 (recording on a 3-master Redis Cluster against one Redis;
# bench/r11.sh), issue 20's R12 (OFREP evaluations against gRPC Assign;
# bench/r12.sh) and issue 14's R9 (Assign while Redis is frozen;
# bench/r9.sh) last.
#
#   bench/run.sh [--smoke] [--rounds N] [--duration SECONDS] [--units N]
#                [--only R9|R10|M1|R11|R12] [--out FILE]
#
# Every figure is a ratio of two measurements taken in this run, side by
# side: each pair runs alternately (A B A B ...) for --rounds rounds and the
# table shows the medians. Absolute numbers from different runs are not
# comparable on shared machines; the ratios are the result.
#
# What it starts (and stops again): a redis-server on a free loopback port
# (AOF on, appendfsync everysec, in a temporary directory), abexp-server with
# bench/experiments-50.yaml recording into it, and abexp-echo-server; for
# R11 also a 3-master Redis Cluster, a one-master one and a second Redis,
# each with an abexp-server recording into it.
# Ctrl-C stops everything it started. With 2 or more cores, the servers and
# every Redis run on core 0 and the load generators on the others
# (taskset), so they do not compete for the same core.
#
# --smoke: one short round of everything (about 30 s), to check that the
# tools still work; its figures are not measurements. scripts/test.sh runs it.
# --only R9, --only R10, --only M1, --only R11, --only R12: measure that
# figure alone
# (its rows of the table).
#
# Needs the build (scripts/build.sh; ABEXP_BUILD_DIR picks the build
# directory, default build/), redis-server and redis-benchmark
# (scripts/install-deps.sh installs everything).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ABEXP_BUILD_DIR:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bin=$build/bin
py=/usr/bin/python3

smoke=0
rounds=3
duration=8
units=1000000
out=""
only=""
usage() {
  sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --duration) duration=${2:?--duration needs seconds}; shift ;;
    --units) units=${2:?--units needs a number}; shift ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --only) only=${2:?--only needs a figure}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case $only in
  ''|R9|R10|M1|R11|R12) ;;
  *) echo "bench/run.sh: --only takes R9, R10, M1, R11 or R12, not '$only'" >&2; exit 2 ;;
esac
if [ "$smoke" = 1 ]; then
  rounds=1
  duration=1
  units=20000
fi
for n in "$rounds" "$duration" "$units"; do
  case $n in
    ''|*[!0-9]*|0) echo "bench/run.sh: --rounds, --duration and --units take positive whole numbers, not '$n'" >&2; exit 2 ;;
  esac
done
if [ "$units" -lt 2000 ]; then
  echo "bench/run.sh: --units must be at least 2000 (R7 compares with 1000 units)" >&2
  exit 2
fi
warmup=2
[ "$smoke" = 1 ] && warmup=0.5

for tool in abexp-server abexp-echo-server abexp-loadgen abexp-micro-bench abexp; do
  if [ ! -x "$bin/$tool" ]; then
    echo "bench/run.sh: $bin/$tool is missing; build first: ./scripts/build.sh" >&2
    exit 1
  fi
done
for tool in redis-server redis-cli redis-benchmark taskset; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench/run.sh: $tool is not installed; run ./scripts/install-deps.sh" >&2
    exit 1
  fi
done

log() { echo "bench: $*" >&2; }

# Cores: servers on core 0, load generators on the rest.
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then
  server_pin=(taskset -c 0)
  load_pin=(taskset -c "1-$((ncpu - 1))")
  pinning="servers and Redis on core 0, load generators on cores 1-$((ncpu - 1))"
else
  server_pin=()
  load_pin=()
  pinning="one core: no pinning, servers and load generators share it"
fi

# R9's functions (r9_cleanup, run_r9), R10's (run_r10), M1's (run_m1) and
# R11's (r11_cleanup, run_r11) and R12's (run_r12).
source "$root/bench/r9.sh"
source "$root/bench/r10.sh"
source "$root/bench/m1.sh"
source "$root/bench/r11.sh"
source "$root/bench/r12.sh"

work=$(mktemp -d /tmp/abexp-bench.XXXXXX)
pids=()
redis_port=""
cleanup() {
  r9_cleanup  # before the servers stop: Redis may be frozen
  r11_cleanup
  # start_server runs in a command substitution (a subshell), so its pids
  # come back through the .pid files it writes.
  for f in "$work"/*.pid; do
    [ -f "$f" ] && pids+=("$(cat "$f")")
  done
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  if [ -n "$redis_port" ]; then
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# Ctrl-C (SIGINT to the whole process group) or SIGTERM: exit, so the EXIT
# trap stops what the bench started. (Without these, a loadgen that ends its
# run early on SIGINT would let the script carry on with the next figure.)
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a server whose first stdout line says "listening on HOST:PORT";
# prints the address.
start_server() {
  local name=$1; shift
  "${server_pin[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  echo "$pid" >"$work/$name.pid"
  for _ in $(seq 1 200); do
    local addr
    addr=$(grep -o 'listening on [0-9.:]*' "$work/$name.out" 2>/dev/null | awk '{print $3}' || true)
    if [ -n "$addr" ]; then echo "$addr"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench/run.sh: $name exited at startup:" >&2
      cat "$work/$name.err" >&2
      exit 1
    fi
    sleep 0.05
  done
  echo "bench/run.sh: $name did not start listening within 10 s" >&2
  exit 1
}

redis_port=$(free_port)
"${server_pin[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 \
  --dir "$work" --save '' --appendonly yes --appendfsync everysec \
  --daemonize yes --logfile "$work/redis.log" >/dev/null
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis() { redis-cli -p "$redis_port" "$@"; }

abexp_addr=$(start_server abexp "$bin/abexp-server" \
  --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
  --redis "127.0.0.1:$redis_port" --spool_dir "$work/spool")
abexp_pid=$(cat "$work/abexp.pid")
echo_addr=$(start_server echo "$bin/abexp-echo-server" --listen 127.0.0.1:0)
log "redis 127.0.0.1:$redis_port, abexp-server $abexp_addr, echo $echo_addr; $pinning"

# One loadgen run; prints its JSON object.
loadgen() {
  "${load_pin[@]}" "$bin/abexp-loadgen" --json "$@" 2>>"$work/loadgen.err"
}
# Field of a JSON object on stdin.
field() {
  "$py" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
# Prints the median of its arguments as the table shows it: two decimals at
# most from 1 up (44139.23, 182.8, 690), four significant digits below 1
# (0.06912), never a float's binary tail (44139.225000000006).
median() {
  "$py" -c '
import statistics, sys
m = statistics.median(float(x) for x in sys.argv[1:])
text = f"{m:.2f}" if abs(m) >= 1 else f"{m:.4g}"
print(text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text)' "$@"
}

# Prints the run's conditions and the table $1, also to --out.
print_report() {
  local model
  # lscpu needs /sys (absent in a chroot); /proc/cpuinfo is the fallback.
  model=$( { lscpu 2>/dev/null || true; } | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
  if [ -z "$model" ]; then
    model=$(awk -F: '/^model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
  fi
  {
    echo "## bench/run.sh $( [ "$smoke" = 1 ] && echo "--smoke (NOT a measurement)" )"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- CPU: ${model:-unknown}, $ncpu cores; $pinning"
    echo "- command: \`bench/run.sh --rounds $rounds --duration $duration --units $units${only:+ --only $only}\`"
    echo "- $rounds round(s) per pair, alternating; ${duration} s per run after ${warmup} s warmup"
    echo
    echo "$1"
  } | tee ${out:+"$out"}
}

lg_threads=$(( ncpu >= 3 ? 2 : 1 ))
closed=(--mode closed --channels 4 --inflight 32 --threads "$lg_threads"
        --duration "${duration}s" --warmup "${warmup}s")

# ---- R1 and R8: closed-loop maximum QPS, echo vs Assign ----
# Each call is a new unit with user and device ids and the 11 attributes of
# bench/experiments-50.yaml, as a page view sends (about 350 bytes); abexp's
# answers average the size of echo's canned one. Each round also logs the
# server's CPU time per call (all its threads, /proc), which a busy machine
# moves much less than QPS.
echo_pid=$(cat "$work/echo.pid")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Closed-loop Assign run against $1 (server pid $2): prints "QPS CPU-us-per-call".
r1_run() {
  local t0 json
  t0=$(cpu_ticks "$2")
  json=$(loadgen --target "$1" --call assign "${closed[@]}")
  echo "$json" | "$py" -c '
import json, sys
j = json.load(sys.stdin)
ticks = int(sys.argv[1]) - int(sys.argv[2])
# The ticks include the warmup; scale the measured calls up to match.
calls = j["requests"] * (1 + float(sys.argv[3]) / float(sys.argv[4]))
print(j["qps"], f"{ticks * 1e4 / calls:.1f}")' "$(cpu_ticks "$2")" "$t0" "$warmup" "$duration"
}
# --rounds alternating closed-loop runs of echo ($1, pid $2) and Assign
# ($3, pid $4), logged under the name $5; sets pair_echo and pair_assign
# (QPS per round).
r1_pairs() {
  pair_echo=(); pair_assign=()
  local r e a e_cpu a_cpu
  for r in $(seq 1 "$rounds"); do
    read -r e e_cpu < <(r1_run "$1" "$2")
    read -r a a_cpu < <(r1_run "$3" "$4")
    pair_echo+=("$e"); pair_assign+=("$a")
    log "$5 round $r: echo $e qps, Assign $a qps (server CPU per call: echo $e_cpu us, abexp $a_cpu us)"
  done
}
# The table row and the note of the last r1_pairs, whose second server is
# measured against its first: $1 the row's id, $2 what it measures, $3 the
# least ratio that meets the goal, $4 the note's opening words. Sets
# pair_row and pair_notes.
pair_row() {
  local den num
  den=$(median "${pair_echo[@]}")
  num=$(median "${pair_assign[@]}")
  pair_row=$("$py" -c "
r = $num / $den
print(f'| $1 | $2 | $num / $den | {r:.2f} | >= $3 | {\"met\" if r >= $3 else \"**missed**\"} |')")
  pair_notes="$4: $(paste -d, <(printf '%s\n' "${pair_echo[@]}") <(printf '%s\n' "${pair_assign[@]}") | sed 's/^/(/; s/$/)/' | tr '\n' ' ')"
}
case $only in
  R9) run_r9; rows=$r9_rows; notes=$r9_notes ;;
  R10) run_r10; rows=$r10_rows; notes=$r10_notes ;;
  M1) run_m1; rows=$m1_rows; notes=$m1_notes ;;
  R11) run_r11; rows=$r11_rows; notes=$r11_notes ;;
  R12) run_r12; rows=$r12_rows; notes=$r12_notes ;;
esac
if [ -n "$only" ]; then
  print_report "$(printf '%s\n' "| # | figure | measured (medians) | ratio | goal | |" \
    "|---|---|---|---|---|---|" "$rows" "" "$notes")"
  exit 0
fi

r1_pairs "$echo_addr" "$echo_pid" "$abexp_addr" "$abexp_pid" R1
echo_qps=("${pair_echo[@]}"); assign_qps=("${pair_assign[@]}")
echo_qps_med=$(median "${echo_qps[@]}")
assign_qps_med=$(median "${assign_qps[@]}")
rss_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$abexp_pid/status")

# ---- R2: open loop at half of echo's maximum rate ----
rate=$("$py" -c "print(int(float('$echo_qps_med') / 2))")
declare -a echo_p99 assign_p99 echo_svc99 assign_svc99 late
open=(--mode open --rate "$rate" --channels 4 --inflight 64 --threads 1
      --duration "${duration}s" --warmup "${warmup}s")
for r in $(seq 1 "$rounds"); do
  ej=$(loadgen --target "$echo_addr" --call assign "${open[@]}")
  aj=$(loadgen --target "$abexp_addr" --call assign "${open[@]}")
  echo_p99+=("$(echo "$ej" | field p99_us)")
  assign_p99+=("$(echo "$aj" | field p99_us)")
  echo_svc99+=("$(echo "$ej" | field service_p99_us)")
  assign_svc99+=("$(echo "$aj" | field service_p99_us)")
  late+=("$(echo "$ej" | field late_sends)" "$(echo "$aj" | field late_sends)")
  log "R2 round $r at $rate/s: p99 echo ${echo_p99[-1]} us, Assign ${assign_p99[-1]} us (from the actual send: ${echo_svc99[-1]} us, ${assign_svc99[-1]} us)"
done
echo_p99_med=$(median "${echo_p99[@]}")
assign_p99_med=$(median "${assign_p99[@]}")
echo_svc99_med=$(median "${echo_svc99[@]}")
assign_svc99_med=$(median "${assign_svc99[@]}")
late_max=$(printf '%s\n' "${late[@]}" | sort -n | tail -1)

# ---- R3, R4: micro-benchmarks, one run, paired benchmarks interleaved ----
micro_args=(--benchmark_format=json --benchmark_repetitions="$rounds"
            --benchmark_enable_random_interleaving=true)
[ "$smoke" = 1 ] && micro_args+=(--benchmark_min_time=0.01)
"${load_pin[@]}" "$bin/abexp-micro-bench" "${micro_args[@]}" \
  >"$work/micro.json" 2>"$work/micro.err"
micro() {  # median CPU ns per iteration of benchmark $1
  "$py" - "$work/micro.json" "$1" <<'EOF'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
times = [b["cpu_time"] for b in runs
         if b.get("run_name", b["name"]) == sys.argv[2]
         and b.get("run_type", "iteration") == "iteration"]
if not times:
    sys.exit(f"no benchmark named {sys.argv[2]} in the micro-bench output")
print(statistics.median(times))
EOF
}
r3_bucket=$(micro BM_R3_BucketOneExperiment)
r3_xxh=$(micro BM_R3_Xxh3OneKey)
r4_assign=$(micro BM_R4_AssignAllExperiments)
r4_xxh=$(micro BM_R4_Xxh3FiftyKeys)
targeting=$(micro BM_TargetingAllExperiments)
log "R3: bucket $r3_bucket ns vs XXH3 $r3_xxh ns; R4: assign $r4_assign ns vs 50 x XXH3 $r4_xxh ns"

# ---- R5: recording through gRPC into Redis vs redis-benchmark HINCRBY ----
bench_n=$(( smoke ? 200000 : 2000000 ))
redis_cmds() {  # Redis commands run since the last RESETSTAT (scripts' included)
  redis info commandstats | tr -d '\r' | "$py" -c '
import sys
total = 0
for line in sys.stdin:
    if not line.startswith("cmdstat_"):
        continue
    name, rest = line[len("cmdstat_"):].split(":", 1)
    if name in ("info", "config", "ping"):
        continue
    total += int(rest.split("calls=", 1)[1].split(",", 1)[0])
print(total)'
}
declare -a rec_items hincrby cmds_per_item spooled
for r in $(seq 1 "$rounds"); do
  redis config resetstat >/dev/null
  rj=$(loadgen --target "$abexp_addr" --call record --record_experiment checkout_exp01 \
       --record_event order_completed --batch 100 --mode closed --channels 2 \
       --inflight 8 --threads 1 --duration "${duration}s" --warmup 0s)
  items=$(echo "$rj" | field items)
  rec_items+=("$(echo "$rj" | field items_per_s)")
  spooled+=("$(echo "$rj" | field spooled)")
  cmds=$(redis_cmds)
  cmds_per_item+=("$("$py" -c "print($cmds / max(1, $items))")")
  h=$("${load_pin[@]}" redis-benchmark -p "$redis_port" -P 16 -n "$bench_n" -q --csv \
      HINCRBY abexp-bench:hincrby f 1 | tail -1 | cut -d, -f2 | tr -d '"')
  hincrby+=("$h")
  log "R5 round $r: ${rec_items[-1]} items/s recorded (${cmds_per_item[-1]} Redis commands each), redis-benchmark HINCRBY $h/s"
done
redis del abexp-bench:hincrby >/dev/null
rec_med=$(median "${rec_items[@]}")
hincrby_med=$(median "${hincrby[@]}")
cmds_med=$(median "${cmds_per_item[@]}")
spooled_max=$(printf '%s\n' "${spooled[@]}" | sort -n | tail -1)

# ---- R6: Redis bytes per exposed unit, exposures only ----
used_memory() { redis info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }
mem_before=$(used_memory)
batch=1000
rj=$(loadgen --target "$abexp_addr" --call record --record_experiment checkout_exp02 \
     --record_events=false --batch "$batch" --mode closed --channels 2 --inflight 4 \
     --threads 1 --max_calls $(( units / batch )) --duration 3600s --warmup 0s)
exposed=$(echo "$rj" | field exposures_recorded)
mem_after=$(used_memory)
bytes_per_unit=$("$py" -c "print(($mem_after - $mem_before) / max(1, $exposed))")
log "R6: $exposed units exposed, used_memory +$((mem_after - mem_before)) bytes"

# ---- R7: results read time, $units vs 1000 exposed units ----
loadgen --target "$abexp_addr" --call record --record_experiment checkout_exp03 \
  --record_events=true --batch 100 --mode closed --channels 1 --inflight 1 \
  --threads 1 --max_calls 20 --duration 600s --warmup 0s >/dev/null
results=(--call results --mode closed --channels 1 --inflight 1 --threads 1
         --duration "${duration}s" --warmup "${warmup}s")
declare -a read_large read_small
for r in $(seq 1 "$rounds"); do
  read_large+=("$(loadgen --target "$abexp_addr" --results_experiment checkout_exp02 "${results[@]}" | field p50_us)")
  read_small+=("$(loadgen --target "$abexp_addr" --results_experiment checkout_exp03 "${results[@]}" | field p50_us)")
  log "R7 round $r: GetResults p50 ${read_large[-1]} us at $exposed units, ${read_small[-1]} us at 1000"
done
read_large_med=$(median "${read_large[@]}")
read_small_med=$(median "${read_small[@]}")

# ---- R10: Assign and echo over TLS with a token (bench/r10.sh) ----
run_r10

# ---- M1: Assign with and without the operators' metrics (bench/m1.sh) ----
run_m1

# ---- R11: recording on a 3-master Redis Cluster / one Redis (bench/r11.sh) ----
run_r11

# ---- R12: OFREP evaluations against gRPC Assign (bench/r12.sh) ----
run_r12

# ---- R9: Assign while Redis is frozen (bench/r9.sh); last, as it freezes
# Redis and leaves the server replaying its spool ----
run_r9

# ---- The table ----
table=$("$py" - <<EOF
r1 = $assign_qps_med / $echo_qps_med
r2 = $assign_p99_med - $echo_p99_med
r3 = $r3_bucket / $r3_xxh
r4 = $r4_assign / $r4_xxh
r5 = $rec_med / $hincrby_med
r6 = $bytes_per_unit
r7 = $read_large_med / $read_small_med
def verdict(ok):
    return "met" if ok else "**missed**"
rows = [
    ("R1", "Assign QPS / echo QPS (closed loop, max)",
     f"$assign_qps_med / $echo_qps_med", f"{r1:.2f}", ">= 0.90", verdict(r1 >= 0.90)),
    ("R2", "p99 Assign - p99 echo at $rate/s (open loop)",
     f"$assign_p99_med us - $echo_p99_med us", f"{r2:.0f} us", "<= 50 us",
     # When the ceiling's own p99 is over 1 ms, the machine's noise is 20x
     # the budget and the difference says nothing.
     verdict(r2 <= 50) if $echo_p99_med < 1000 else "inconclusive (echo p99 >= 1 ms)"),
    ("R3", "bucket one (unit, experiment) / one XXH3-64",
     f"{$r3_bucket:.1f} ns / {$r3_xxh:.1f} ns", f"{r3:.2f}", "<= 2", verdict(r3 <= 2)),
    ("R4", "Assign all experiments / 50 x XXH3-64",
     f"{$r4_assign:.0f} ns / {$r4_xxh:.0f} ns", f"{r4:.2f}", "<= 4", verdict(r4 <= 4)),
    ("R5", "recorded items/s / redis-benchmark -P 16 HINCRBY/s",
     f"{$rec_med:.0f} / {$hincrby_med:.0f} ({$cmds_med:.1f} Redis commands per item)",
     f"{r5:.3f}", ">= 0.25", verdict(r5 >= 0.25)),
    ("R6", "Redis bytes per exposed unit",
     f"+{$mem_after - $mem_before} bytes / $exposed units", f"{r6:.1f}", "<= 64", verdict(r6 <= 64)),
    ("R7", "GetResults p50 at $exposed units / at 1000 units",
     f"$read_large_med us / $read_small_med us", f"{r7:.2f}", "~ 1", verdict(0.8 <= r7 <= 1.25)),
    ("R8", "abexp-server peak RSS under the R1 load",
     "VmHWM", f"{$rss_kb / 1024:.1f} MiB", "reported", "-"),
]
print("| # | figure | measured (medians) | ratio | goal | |")
print("|---|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
print("""$r10_rows""")
print("""$m1_rows""")
print("""$r11_rows""")
print("""$r12_rows""")
print("""$r9_rows""")
print()
print(f"Targeting all experiments for one unit: {$targeting:.0f} ns.")
print(f"Open-loop late sends (> 1 ms behind schedule), worst run: $late_max.")
print(f"R2 from the actual send time (the generator's lateness left out): "
      f"p99 Assign $assign_svc99_med us - echo $echo_svc99_med us = "
      f"{$assign_svc99_med - $echo_svc99_med:.0f} us.")
print(f"Record runs that spooled (Redis not keeping up), worst run: $spooled_max items.")
print("""$r10_notes""")
print("""$m1_notes""")
print("""$r11_notes""")
print("""$r12_notes""")
print("""$r9_notes""")
EOF
)

print_report "$table"
