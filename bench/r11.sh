# bench/r11.sh: R11 of bench/run.sh, which sources this file (it does not
# run on its own; it uses run.sh's variables and helpers: bin, root, work,
# py, redis_port, abexp_addr, abexp_pid, server_pin, duration, rounds,
# loadgen, field, median, log, start_server, cpu_ticks).
#
# R11 (issue 17): what Redis Cluster costs recording. The script starts a
# 3-master cluster on loopback (redis-server --cluster-enabled yes on free
# ports, each with its cluster bus on another free port and the bench's
# single-Redis settings: AOF, appendfsync everysec; joined by redis-cli
# --cluster create --cluster-yes). It has no replicas: a replica costs its
# master only the replication stream, and failover is tested in ctest
# (tests/cluster_*), not measured here. A second abexp-server records into
# the cluster with the default shards per experiment phase (one per master,
# so 3), and a third into a second single Redis with as many shards
# (--redis_shards_per_experiment 3), which splits the overhead into the
# shards' part and the cluster's. A fourth records into a one-master cluster
# (one cluster-enabled Redis holding all 16384 slots) with as many shards,
# which splits the cluster's part again: Redis's cluster-mode bookkeeping
# (one master / one Redis with the shards) and three Redis processes
# sharing core 0 (three masters / one master).
# R5's recording load (abexp-loadgen --call record, batches of 100
# exposures and events of checkout_exp01) then runs against the
# single-Redis abexp-server, the cluster one, the sharded one and the
# one-master one in turn,
# for --rounds rounds. Each
# run also reads every Redis's CPU time (INFO cpu: used_cpu_sys +
# used_cpu_user, all its threads) before and after, so the CPU per recorded
# item is summed over the cluster's masters.
#
# Rows: recorded items/s, cluster / one Redis (reported: with the servers
# and every Redis sharing one core, the cluster's masters add no CPU; what
# they can add is parallel round trips), and Redis CPU per recorded item,
# cluster summed / one Redis (goal <= 1.2). The notes give each master's share of the cluster's Redis CPU
# and of its keys, and what one Redis core records on the cluster, which is
# what a cluster with a core per master multiplies.

r11_masters=3
r11_ports=()  # every Redis R11 starts: the cluster's masters, the sharded one, the one-master cluster

# For run.sh's exit trap: every cluster node stopped. (Their pid files in
# $work let the trap's generic loop stop them too; this also covers a node
# that was started but had not written its pid file yet.)
r11_cleanup() {
  local port
  for port in "${r11_ports[@]}"; do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  return 0
}

# Prints $1 distinct free loopback ports, held open together while chosen.
r11_free_ports() {
  "$py" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Starts a redis-server named $1 on port $2 with the bench's settings (AOF,
# appendfsync everysec) and the extra arguments "${@:3}"; returns once it
# answers PING.
r11_start_redis() {
  local name=$1 port=$2; shift 2
  local dir=$work/r11-$name
  mkdir -p "$dir"
  r11_ports+=("$port")
  "${server_pin[@]}" redis-server --port "$port" --bind 127.0.0.1 \
    --dir "$dir" --save '' --appendonly yes --appendfsync everysec \
    --daemonize yes --pidfile "$work/r11-$name.pid" \
    --logfile "$dir/redis.log" "$@" >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "bench/run.sh: R11: redis-server $name on port $port did not answer within 5 s:" >&2
  cat "$dir/redis.log" >&2
  exit 1
}

# Starts the cluster's nodes and joins them; sets r11_ports and returns once
# every node says cluster_state:ok with all 16384 slots assigned.
r11_start_cluster() {
  local ports i port
  read -r -a ports < <(r11_free_ports $((2 * r11_masters)))
  for i in $(seq 0 $((r11_masters - 1))); do
    r11_start_redis "node$i" "${ports[$i]}" --cluster-enabled yes \
      --cluster-port "${ports[$((r11_masters + i))]}" \
      --cluster-config-file nodes.conf
  done
  local nodes=()
  for port in "${r11_ports[@]}"; do nodes+=("127.0.0.1:$port"); done
  if ! redis-cli --cluster create "${nodes[@]}" --cluster-yes \
      >"$work/r11-create.log" 2>&1; then
    echo "bench/run.sh: R11: redis-cli --cluster create failed:" >&2
    cat "$work/r11-create.log" >&2
    exit 1
  fi
  local info ready
  for _ in $(seq 1 600); do
    ready=0
    for port in "${r11_ports[@]}"; do
      info=$(redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r')
      if echo "$info" | grep -qx 'cluster_state:ok' &&
         echo "$info" | grep -qx 'cluster_slots_assigned:16384'; then
        ready=$((ready + 1))
      fi
    done
    [ "$ready" = "$r11_masters" ] && return 0
    sleep 0.1
  done
  echo "bench/run.sh: R11: the cluster on ports ${r11_ports[*]} did not reach cluster_state:ok within 60 s; last CLUSTER INFO of port $port:" >&2
  echo "$info" >&2
  exit 1
}

# Starts a one-master cluster (all 16384 slots on one node) on port $1 with
# its bus on port $2; returns once it says cluster_state:ok.
r11_start_one_master() {
  local port=$1 info
  r11_start_redis one-master "$port" --cluster-enabled yes \
    --cluster-port "$2" --cluster-config-file nodes.conf
  redis-cli -p "$port" cluster addslotsrange 0 16383 >/dev/null
  for _ in $(seq 1 600); do
    info=$(redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r')
    echo "$info" | grep -qx 'cluster_state:ok' && return 0
    sleep 0.1
  done
  echo "bench/run.sh: R11: the one-master cluster on port $port did not reach cluster_state:ok within 60 s:" >&2
  echo "$info" >&2
  exit 1
}

# Prints the CPU seconds (system + user) each Redis on ports "$@" has used.
r11_redis_cpu() {
  local port
  for port in "$@"; do
    redis-cli -p "$port" info cpu | tr -d '\r' |
      awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f ", s}'
  done
  echo
}

# One recording run against abexp-server $1 (pid $2), whose Redis listens on
# the ports "${@:3}"; prints "items/s Redis-us-per-item abexp-us-per-item
# spooled per-node-Redis-us,..." (the last: each Redis's CPU per item).
r11_run() {
  local target=$1 pid=$2; shift 2
  local cpu0 cpu1 t0 t1 json
  read -r -a cpu0 < <(r11_redis_cpu "$@")
  t0=$(cpu_ticks "$pid")
  json=$(loadgen --target "$target" --call record \
         --record_experiment checkout_exp01 --record_event order_completed \
         --batch 100 --mode closed --channels 2 --inflight 8 --threads 1 \
         --duration "${duration}s" --warmup 0s)
  t1=$(cpu_ticks "$pid")
  read -r -a cpu1 < <(r11_redis_cpu "$@")
  echo "$json" | "$py" -c '
import json, sys
j = json.load(sys.stdin)
before, after = sys.argv[1].split(), sys.argv[2].split()
items = max(1, j["items"])
nodes = [(float(a) - float(b)) * 1e6 / items for a, b in zip(after, before)]
abexp = (int(sys.argv[4]) - int(sys.argv[3])) * 1e4 / items
print(j["items_per_s"], f"{sum(nodes):.3f}", f"{abexp:.3f}", j["spooled"],
      ",".join(f"{n:.3f}" for n in nodes))' "${cpu0[*]}" "${cpu1[*]}" "$t0" "$t1"
}

# Runs R11 (all rounds) and sets r11_rows and r11_notes for the table.
run_r11() {
  r11_start_cluster
  local cluster_ports=("${r11_ports[@]}") seeds=() port
  for port in "${cluster_ports[@]}"; do seeds+=("127.0.0.1:$port"); done
  local sharded_port
  sharded_port=$(free_port)
  r11_start_redis sharded "$sharded_port"
  local one_ports
  read -r -a one_ports < <(r11_free_ports 2)
  r11_start_one_master "${one_ports[0]}" "${one_ports[1]}"
  local cluster_addr cluster_pid sharded_addr sharded_pid
  cluster_addr=$(start_server abexp-r11 "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis_cluster "$(IFS=,; echo "${seeds[*]}")" --spool_dir "$work/spool-r11")
  cluster_pid=$(cat "$work/abexp-r11.pid")
  sharded_addr=$(start_server abexp-r11-sharded "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$sharded_port" --redis_shards_per_experiment "$r11_masters" \
    --spool_dir "$work/spool-r11-sharded")
  sharded_pid=$(cat "$work/abexp-r11-sharded.pid")
  local one_addr one_pid
  one_addr=$(start_server abexp-r11-one "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis_cluster "127.0.0.1:${one_ports[0]}" \
    --redis_shards_per_experiment "$r11_masters" --spool_dir "$work/spool-r11-one")
  one_pid=$(cat "$work/abexp-r11-one.pid")
  log "R11: cluster $(IFS=,; echo "${seeds[*]}") (${r11_masters} masters, no replicas), abexp-server $cluster_addr on it (${r11_masters} shards per experiment phase, one per master); one Redis 127.0.0.1:$redis_port behind $abexp_addr; one Redis with ${r11_masters} shards 127.0.0.1:$sharded_port behind $sharded_addr; a one-master cluster with ${r11_masters} shards 127.0.0.1:${one_ports[0]} behind $one_addr"
  # Per target (one Redis, the cluster, one Redis with S shards, the
  # one-master cluster with S shards): items/s,
  # Redis and abexp CPU per item, a word per round.
  local names=("one Redis" "cluster" "one Redis with $r11_masters shards"
               "one-master cluster with $r11_masters shards")
  local targets=("$abexp_addr $abexp_pid $redis_port"
                 "$cluster_addr $cluster_pid ${cluster_ports[*]}"
                 "$sharded_addr $sharded_pid $sharded_port"
                 "$one_addr $one_pid ${one_ports[0]}")
  local ips=("" "" "" "") rcpu=("" "" "" "") acpu=("" "" "" "")
  local spooled=0 nodes_cpu=() r t i c a sp per_node
  for r in $(seq 1 "$rounds"); do
    for t in 0 1 2 3; do
      # shellcheck disable=SC2086  # the target's words are r11_run's arguments
      read -r i c a sp per_node < <(r11_run ${targets[$t]})
      ips[$t]+="$i "; rcpu[$t]+="$c "; acpu[$t]+="$a "
      spooled=$((spooled + sp))
      [ "$t" = 1 ] && nodes_cpu+=("$per_node")
      log "R11 round $r, ${names[$t]}: $i items/s; CPU per item: Redis $c us ($per_node per node), abexp $a us"
    done
  done
  local keys=()
  for port in "${cluster_ports[@]}"; do keys+=("$(redis-cli -p "$port" dbsize)"); done
  local out
  out=$("$py" - "${ips[@]}" "${rcpu[@]}" "${acpu[@]}" "${nodes_cpu[*]}" \
        "${keys[*]}" "$spooled" "$r11_masters" <<'EOF'
import statistics, sys
med = statistics.median
def medians(args): return [med(float(x) for x in a.split()) for a in args]
ips, rcpu, acpu = medians(sys.argv[1:5]), medians(sys.argv[5:9]), medians(sys.argv[9:13])
rounds_ips = [a.split() for a in sys.argv[1:5]]
nodes = [[float(x) for x in round_.split(",")] for round_ in sys.argv[13].split()]
keys = [int(k) for k in sys.argv[14].split()]
spooled, masters = int(sys.argv[15]), int(sys.argv[16])
ratio_ips, ratio_cpu = ips[1] / ips[0], rcpu[1] / rcpu[0]
verdict = "met" if ratio_cpu <= 1.2 else "**missed**"
print(f"| R11 | recorded items/s, {masters}-master cluster ({masters} shards per phase) / one Redis (R5's load; every Redis on core 0) "
      f"| {ips[1]:.0f} / {ips[0]:.0f} | {ratio_ips:.2f} | reported | - |")
print(f"| R11 | Redis CPU per recorded item, summed over the {masters} masters / one Redis (same runs) "
      f"| {rcpu[1]:.2f} us / {rcpu[0]:.2f} us | {ratio_cpu:.2f} | <= 1.2 | {verdict} |")
print("@@")
print(f"R11 rounds (one Redis, cluster, one Redis with {masters} shards, one-master cluster with {masters} shards: recorded items/s): "
      + " ".join("(" + ",".join(r) + ")" for r in zip(*rounds_ips)))
print(f"R11 one Redis with {masters} shards per phase: {rcpu[2]:.2f} us of Redis CPU per item, "
      f"{rcpu[2] / rcpu[0]:.2f} x one Redis: the shards' part of the cluster's "
      f"{ratio_cpu:.2f}; the rest, {rcpu[1] / rcpu[2]:.2f}, is the cluster's own.")
print(f"R11 the cluster's own part split: a one-master cluster with {masters} shards costs "
      f"{rcpu[3]:.2f} us, {rcpu[3] / rcpu[2]:.2f} x one Redis with {masters} shards (Redis's "
      f"cluster-mode bookkeeping); {masters} masters / one master {rcpu[1] / rcpu[3]:.2f} "
      f"({masters} Redis processes sharing core 0 here: their extra round trips a real "
      f"cluster pays too, their sharing of one core it does not; see PERFORMANCE.md).")
share = [med(n[i] for n in nodes) for i in range(masters)]
print("R11 cluster masters: share of the cluster's Redis CPU "
      + ", ".join(f"{s / sum(share):.0%}" for s in share)
      + "; keys " + ", ".join(str(k) for k in keys) + ".")
print(f"R11 abexp-server CPU per recorded item: one Redis {acpu[0]:.2f} us, "
      f"cluster {acpu[1]:.2f} us, one Redis with {masters} shards {acpu[2]:.2f} us, "
      f"one-master cluster {acpu[3]:.2f} us.")
print(f"R11 implied: one Redis core records {1e6 / rcpu[0]:.0f} items/s alone and "
      f"{1e6 / rcpu[1]:.0f} items/s as a cluster master, so {masters} masters "
      f"with a core each would record about {masters * 1e6 / rcpu[1]:.0f} items/s "
      f"(abexp-server replicas scale apart: {1e6 / acpu[1]:.0f} items/s per core on the cluster).")
print(f"R11 records spooled (Redis not keeping up), all runs: {spooled}.")
EOF
)
  r11_rows=${out%%$'\n'@@*}
  r11_notes=${out#*@@$'\n'}
  kill -TERM "$cluster_pid" "$sharded_pid" "$one_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$cluster_pid" 2>/dev/null || kill -0 "$sharded_pid" 2>/dev/null ||
      kill -0 "$one_pid" 2>/dev/null || break
    sleep 0.1
  done
  r11_cleanup
  r11_ports=()
}
