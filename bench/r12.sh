# bench/r12.sh: R12 of bench/run.sh, which sources this file (it does not
# run on its own; it uses run.sh's variables and helpers: bin, root, work,
# redis_port, closed, duration, warmup, rounds, load_pin, log, start_server,
# r1_run, pair_row).
#
# R12 (issue 20): what an OpenFeature evaluation over OFREP costs against a
# gRPC Assign of the same flag. One abexp-server on bench/experiments-50.yaml
# with --http_listen; for --rounds rounds, alternately, the closed-loop R1
# load of gRPC Assign calls asking for one feature (checkout_flow), and wrk
# posting OFREP single-flag evaluations of that flag over HTTP/1.1
# keep-alive (bench/r12.lua: each a new unit drawn like loadgen's), with as
# many connections as the gRPC load has calls in flight. Goal: OFREP
# evaluations/s / Assign calls/s >= 0.5.

r12_flag=checkout_flow

# One wrk run against http://$1: prints its requests/s. Fails the bench
# when any answer was not 2xx.
r12_wrk() {
  local out rps bad
  out=$(R12_FLAG=$r12_flag "${load_pin[@]}" wrk -t "$lg_threads" -c 128 \
    -d "${duration}s" -s "$root/bench/r12.lua" "http://$1")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ {print $5}')
  if [ -n "$bad" ] || [ -z "$rps" ]; then
    echo "bench/run.sh: R12's OFREP load got errors or no figure:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "$rps"
}

# Runs R12 (all rounds) and sets r12_rows and r12_notes for the table.
run_r12() {
  if ! command -v wrk >/dev/null 2>&1; then
    echo "bench/run.sh: R12 needs wrk; install it with scripts/install-deps.sh" >&2
    exit 1
  fi
  local grpc pid http
  grpc=$(start_server abexp-r12 "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$redis_port" --spool_dir "$work/spool-r12" \
    --http_listen 127.0.0.1:0)
  pid=$(cat "$work/abexp-r12.pid")
  http=$(grep -o 'http=[0-9.:]*' "$work/abexp-r12.out" | cut -d= -f2)
  log "R12: abexp-server $grpc, OFREP on $http, flag $r12_flag"
  local saved=("${closed[@]}")
  closed+=(--features "$r12_flag")
  pair_echo=(); pair_assign=()
  local r a a_cpu o
  for r in $(seq 1 "$rounds"); do
    read -r a a_cpu < <(r1_run "$grpc" "$pid")
    o=$(r12_wrk "$http")
    pair_echo+=("$a"); pair_assign+=("$o")
    log "R12 round $r: Assign $a calls/s (server CPU per call $a_cpu us), OFREP $o evaluations/s"
  done
  closed=("${saved[@]}")
  pair_row R12 "OFREP single-flag evaluations/s / gRPC Assign calls/s, one flag (HTTP/1.1 keep-alive, wrk)" \
    0.50 "R12 rounds (Assign calls/s, OFREP evaluations/s)"
  r12_rows=$pair_row
  r12_notes=$pair_notes
  kill -TERM "$pid" 2>/dev/null || true
}
