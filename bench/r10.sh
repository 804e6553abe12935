# bench/r10.sh: R10 of bench/run.sh, which sources this file (it does not
# run on its own; it uses run.sh's variables and helpers: bin, root, work,
# redis_port, closed, median, log, start_server, r1_pairs, pair_row).
#
# R10 (issue 15): what TLS and tokens cost Assign against what they cost
# gRPC itself. A second abexp-server and a second echo server are started
# with the same TLS certificate (a CA and a server certificate for
# 127.0.0.1 made here with openssl) and the same token file (one token of
# role `assign`, made by `abexp token create`), and the closed-loop R1 load
# runs against each over TLS with the token, alternately, for --rounds
# rounds. Goal: Assign QPS / echo QPS >= 0.9. Each round also logs the
# server CPU per call, as R1 does.

# Makes $work/tls/{ca,server}.{key,pem} and $work/tokens (with $r10_token).
r10_credentials() {
  local d=$work/tls
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=abexp bench CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/san.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
    -CAcreateserial -days 2 -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null
  local created
  created=$("$bin/abexp" token create --role assign --name bench 2>/dev/null)
  r10_token=$(echo "$created" | sed -n 1p)
  echo "$created" | sed -n 2p >"$work/tokens"
  chmod 600 "$work/tokens"
}

# Runs R10 (all rounds) and sets r10_rows and r10_notes for the table.
run_r10() {
  r10_credentials
  local tls=(--tls_cert_file "$work/tls/server.pem" --tls_key_file "$work/tls/server.key"
             --auth_tokens_file "$work/tokens")
  local abexp_tls echo_tls abexp_tls_pid echo_tls_pid
  abexp_tls=$(start_server abexp-tls "$bin/abexp-server" \
    --config "$root/bench/experiments-50.yaml" --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$redis_port" --spool_dir "$work/spool-tls" "${tls[@]}")
  abexp_tls_pid=$(cat "$work/abexp-tls.pid")
  echo_tls=$(start_server echo-tls "$bin/abexp-echo-server" --listen 127.0.0.1:0 "${tls[@]}")
  echo_tls_pid=$(cat "$work/echo-tls.pid")
  log "R10: abexp-server $abexp_tls and echo $echo_tls over TLS with a token"
  # r1_run passes "${closed[@]}" to loadgen; add the client's credentials.
  local saved=("${closed[@]}")
  closed+=(--tls_ca_file "$work/tls/ca.pem" --token "$r10_token")
  r1_pairs "$echo_tls" "$echo_tls_pid" "$abexp_tls" "$abexp_tls_pid" "R10 (TLS, token)"
  closed=("${saved[@]}")
  pair_row R10 "Assign QPS / echo QPS, both over TLS with a token (closed loop, max)" \
    0.90 "R10 rounds (echo, Assign calls/s)"
  r10_rows=$pair_row
  r10_notes=$pair_notes
  kill -TERM "$abexp_tls_pid" "$echo_tls_pid" 2>/dev/null || true
}
