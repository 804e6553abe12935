# bench/m1.sh: M1 of bench/run.sh, which sources this file (it does not run
# on its own; it uses run.sh's variables and helpers: bin, root, work,
# redis_port, median, log, start_server, r1_pairs, pair_row).
#
# M1 (issue 16): what the operators' metrics cost Assign. Two abexp-servers
# on bench/experiments-50.yaml, one without --http_listen (no metric is
# counted) and one with it (every call counted: its method, code and
# latency, the variants it serves), and the closed-loop R1 load against
# each, alternately, for --rounds rounds; the one with metrics is scraped
# once a second meanwhile, as a busy Prometheus would. Goal: QPS with
# metrics / QPS without >= 0.95.

# Scrapes http://$1/metrics once a second until killed.
m1_scraper() {
  while :; do
    "$py" -c "import urllib.request, sys; urllib.request.urlopen('http://' + sys.argv[1] + '/metrics', timeout=5).read()" "$1" \
      2>/dev/null || true
    sleep 1
  done
}

# Runs M1 (all rounds) and sets m1_rows and m1_notes for the table.
run_m1() {
  local off on off_pid on_pid http scraper
  off=$(start_server abexp-m1-off "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$redis_port" --spool_dir "$work/spool-m1-off")
  off_pid=$(cat "$work/abexp-m1-off.pid")
  on=$(start_server abexp-m1-on "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$redis_port" --spool_dir "$work/spool-m1-on" \
    --http_listen 127.0.0.1:0)
  on_pid=$(cat "$work/abexp-m1-on.pid")
  http=$(grep -o 'http=[0-9.:]*' "$work/abexp-m1-on.out" | cut -d= -f2)
  log "M1: abexp-server $off without metrics, $on with metrics (scraped at $http)"
  m1_scraper "$http" &
  scraper=$!
  # r1_pairs calls its first server "echo": here it is the one without
  # metrics.
  r1_pairs "$off" "$off_pid" "$on" "$on_pid" "M1 (without, with metrics)"
  kill "$scraper" 2>/dev/null || true
  wait "$scraper" 2>/dev/null || true
  pair_row M1 "Assign QPS with metrics (--http_listen, scraped every second) / without (closed loop, max)" \
    0.95 "M1 rounds (without, with metrics: Assign calls/s)"
  m1_rows=$pair_row
  m1_notes=$pair_notes
  kill -TERM "$off_pid" "$on_pid" 2>/dev/null || true
}
