# bench/r9.sh: R9 of bench/run.sh, which sources this file (it does not run
# on its own; it uses run.sh's variables and helpers: bin, root, work,
# redis_port, abexp_addr, duration, warmup, rounds, load_pin, loadgen, field,
# median, log, start_server).
#
# R9 (issue 14): plain Assign from ONE closed-loop client (one connection,
# one call in flight) while 32 other clients record into the same
# abexp-server, first with Redis live, then with Redis frozen by SIGSTOP,
# alternating live and frozen phases for --rounds rounds. Goals: Assign
# throughput frozen / live >= 0.9 and p99 frozen <= 1.5 x p99 live. In each
# phase, the same single client also runs sticky Assign calls (every call a
# new unit, so each reads Redis) against a second abexp-server serving
# bench/experiments-sticky.yaml; frozen, their p99 is reported against the
# sticky read budget.
#
# A phase: the recorders start (abexp-loadgen --call record with 32
# connections, 32 calls in flight, a 1 s deadline per call, refusals by a
# frozen Redis counted by code; a refusal with a retry hint, which the
# server sends while it bounds recording from its spool, is sent again after
# the hinted delay, as abexp's EventSender does: --honour_retry_hint) and the phase waits until their warmup is
# over (--ready_file); then Redis is frozen (frozen phases), plain Assign is
# measured, then sticky Assign, then the recorders are stopped (SIGINT: they
# report and exit). After a frozen phase Redis gets SIGCONT and the phase
# waits until a new record is written to Redis rather than to the spool, i.e.
# until the server has replayed what it spooled. r9_cleanup, called by
# run.sh's exit trap, always sends SIGCONT, so a failed run never leaves
# Redis stopped.

# The sticky read budget R9 reports against, and passes to the sticky server
# as --sticky_read_budget when that abexp-server has the flag.
r9_budget_ms=5
r9_redis_pid=""
r9_rec_pid=""

# For run.sh's exit trap: Redis running again, no recorder left behind.
r9_cleanup() {
  [ -n "$r9_redis_pid" ] && kill -CONT "$r9_redis_pid" 2>/dev/null
  if [ -n "$r9_rec_pid" ]; then
    kill -TERM "$r9_rec_pid" 2>/dev/null
    wait "$r9_rec_pid" 2>/dev/null
  fi
  return 0
}

# Starts the 32 recorders in the background; returns once they measure.
r9_start_recorders() {
  local ready=$work/r9-recorders.ready
  rm -f "$ready"
  "${load_pin[@]}" "$bin/abexp-loadgen" --json --target "$abexp_addr" \
    --call record --record_experiment checkout_exp01 \
    --record_event order_completed --batch 20 --mode closed --channels 32 \
    --inflight 32 --threads 1 --timeout 1s --honour_retry_hint \
    --allowed_errors DEADLINE_EXCEEDED,RESOURCE_EXHAUSTED,UNAVAILABLE \
    --duration 3600s --warmup "${warmup}s" --ready_file "$ready" \
    >"$work/r9-recorders.json" 2>"$work/r9-recorders.err" &
  r9_rec_pid=$!
  for _ in $(seq 1 600); do
    [ -e "$ready" ] && return 0
    if ! kill -0 "$r9_rec_pid" 2>/dev/null; then
      echo "bench/run.sh: R9's recorders exited before measuring:" >&2
      cat "$work/r9-recorders.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench/run.sh: R9's recorders did not start measuring within 60 s" >&2
  exit 1
}

# Stops the recorders (SIGINT ends their run); their JSON goes to
# r9_rec_json.
r9_stop_recorders() {
  kill -INT "$r9_rec_pid"
  local rc=0
  wait "$r9_rec_pid" || rc=$?
  r9_rec_pid=""
  if [ "$rc" != 0 ]; then
    echo "bench/run.sh: R9's recorders failed (exit $rc):" >&2
    cat "$work/r9-recorders.err" >&2
    exit 1
  fi
  r9_rec_json=$(cat "$work/r9-recorders.json")
}

# Waits until records reach Redis, not the spool: the server has replayed
# everything it spooled while Redis was frozen. (A batch, because a record
# of a holdout unit is ignored, neither recorded nor spooled.)
r9_wait_recording_healthy() {
  local j
  for _ in $(seq 1 240); do
    j=$(loadgen --target "$abexp_addr" --call record \
        --record_experiment checkout_exp01 --record_events=false --batch 10 \
        --mode closed --channels 1 --inflight 1 --threads 1 --max_calls 1 \
        --duration 60s --warmup 0s --allow_errors)
    if [ "$(echo "$j" | field spooled)" = 0 ] &&
       [ "$(echo "$j" | field errors)" = 0 ] &&
       [ "$(echo "$j" | field recorded)" != 0 ]; then
      return 0
    fi
    sleep 0.25
  done
  echo "bench/run.sh: after R9, abexp-server still spools its records 60 s after Redis was resumed" >&2
  exit 1
}

# "DEADLINE_EXCEEDED 12, UNAVAILABLE 3" (or "none") from a loadgen JSON.
r9_codes() {
  "$py" -c '
import json, sys
codes = json.load(sys.stdin)["errors_by_code"]
print(", ".join(f"{k} {v}" for k, v in sorted(codes.items())) or "none")'
}

# One phase, $1 = live or frozen, of round $2; appends to the r9_* arrays.
r9_phase() {
  local state=$1 round=$2 aj sj
  local client=(--call assign --mode closed --channels 1 --inflight 1
                --threads 1 --duration "${duration}s" --warmup "${warmup}s")
  r9_start_recorders
  [ "$state" = frozen ] && kill -STOP "$r9_redis_pid"
  aj=$(loadgen --target "$abexp_addr" "${client[@]}")
  # Not strict: its failures are counted, and a run in which no call
  # completed (a sticky read held longer than the window) is reported.
  sj=$(loadgen --target "$r9_sticky_addr" "${client[@]}" --allow_errors) || true
  r9_stop_recorders
  if [ "$state" = frozen ]; then
    kill -CONT "$r9_redis_pid"
    r9_wait_recording_healthy
  fi
  local qps p99 sp99 smax serr note spooled
  qps=$(echo "$aj" | field qps)
  p99=$(echo "$aj" | field p99_us)
  sp99=$(echo "$sj" | field p99_us)
  smax=$(echo "$sj" | field max_us)
  serr=$(echo "$sj" | field errors)
  if [ "$(echo "$sj" | field requests)" = 0 ]; then
    # Every call outlasted the window: its length is a lower bound.
    sp99=$((duration * 1000000)); smax=$sp99
    r9_sticky_stalled=$((r9_sticky_stalled + 1))
  fi
  r9_sticky_errors=$((r9_sticky_errors + serr))
  spooled=$(echo "$r9_rec_json" | field spooled)
  note="$(echo "$r9_rec_json" | field qps) calls/s of 20 records, $spooled records spooled, failed calls: $(echo "$r9_rec_json" | r9_codes) ($(echo "$r9_rec_json" | field retry_hints) sent again after their retry hint)"
  if [ "$state" = live ]; then
    r9_qps_live+=("$qps"); r9_p99_live+=("$p99")
    r9_sticky_p99_live+=("$sp99"); r9_rec_note_live=$note
    # The server found Redis too slow (its log says why) and spooled: this
    # live phase was not all live.
    if [ "$spooled" != 0 ]; then r9_live_spooled=$((r9_live_spooled + 1)); fi
  else
    r9_qps_frozen+=("$qps"); r9_p99_frozen+=("$p99")
    r9_sticky_p99_frozen+=("$sp99"); r9_sticky_max_frozen+=("$smax")
    r9_rec_note_frozen=$note
  fi
  log "R9 round $round, Redis $state: Assign $qps qps, p99 $p99 us; sticky Assign p99 $sp99 us, max $smax us, $serr failed; recorders: $note"
}

# Runs R9 (all rounds) and sets r9_rows and r9_notes for the table.
run_r9() {
  r9_redis_pid=$(redis info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
  local help sticky_args flag_note
  sticky_args=(--config "$root/bench/experiments-sticky.yaml"
               --listen 127.0.0.1:0 --redis "127.0.0.1:$redis_port"
               --redis_prefix abexp-r9-sticky --spool_dir "$work/spool-sticky")
  # --helpfull: abexp-server's --help does not list its own flags.
  help=$("$bin/abexp-server" --helpfull 2>&1 || true)
  case $help in
    *sticky_read_budget*)
      sticky_args+=(--sticky_read_budget "${r9_budget_ms}ms")
      flag_note="with --sticky_read_budget ${r9_budget_ms}ms" ;;
    *)
      flag_note="this abexp-server has no --sticky_read_budget: no budget applied" ;;
  esac
  r9_sticky_addr=$(start_server sticky "$bin/abexp-server" "${sticky_args[@]}")
  r9_qps_live=() r9_qps_frozen=() r9_p99_live=() r9_p99_frozen=()
  r9_sticky_p99_live=() r9_sticky_p99_frozen=() r9_sticky_max_frozen=()
  r9_sticky_errors=0
  r9_sticky_stalled=0
  r9_live_spooled=0
  for r in $(seq 1 "$rounds"); do
    r9_phase live "$r"
    r9_phase frozen "$r"
  done
  local ql qf pl pf sl sf smax
  ql=$(median "${r9_qps_live[@]}")
  qf=$(median "${r9_qps_frozen[@]}")
  pl=$(median "${r9_p99_live[@]}")
  pf=$(median "${r9_p99_frozen[@]}")
  sl=$(median "${r9_sticky_p99_live[@]}")
  sf=$(median "${r9_sticky_p99_frozen[@]}")
  smax=$(printf '%s\n' "${r9_sticky_max_frozen[@]}" | sort -g | tail -1)
  r9_rows=$("$py" - <<EOF
def verdict(ok):
    return "met" if ok else "**missed**"
t = $qf / $ql
p = $pf / $pl
s = $sf / ($r9_budget_ms * 1000)
rows = [
    ("R9", "plain Assign QPS, Redis frozen / live (1 client; 32 others record)",
     f"$qf / $ql", f"{t:.2f}", ">= 0.90", verdict(t >= 0.90)),
    ("R9", "plain Assign p99, Redis frozen / live (same runs)",
     f"$pf us / $pl us", f"{p:.2f}", "<= 1.5", verdict(p <= 1.5)),
    ("R9", "sticky Assign p99, Redis frozen / read budget",
     f"$sf us (slowest {$smax / 1000:.0f} ms) / ${r9_budget_ms} ms ($flag_note)",
     f"{s:.2f}", "<= 2, none > 1 s",
     # After a failed read the server skips sticky reads for a second, so a
     # call held for the 2 s Redis command timeout shows in the slowest
     # call, not in the p99. A failed or stalled call is a miss too.
     verdict(s <= 2 and $smax < 1e6
             and $r9_sticky_errors + $r9_sticky_stalled == 0)),
]
for row in rows:
    print("| " + " | ".join(row) + " |")
EOF
)
  r9_notes="R9 recorders (last round), Redis live: $r9_rec_note_live; Redis frozen: $r9_rec_note_frozen.
R9 live phases in which abexp-server spooled records all the same (it found Redis too slow): $r9_live_spooled of $rounds.
R9 sticky Assign: p99 $sl us with Redis live; with Redis frozen the slowest call took $smax us; $r9_sticky_errors sticky calls failed over all phases; in $r9_sticky_stalled phase(s) no sticky call completed within the window (its length counted as the p99)."
}
