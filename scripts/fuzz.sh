#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, docs/fuzzing.md) in the Clang
# build with AddressSanitizer and UndefinedBehaviorSanitizer that
# scripts/sanitize.sh also uses (scripts/clang-build.sh), then for each
# target:
#  1. runs every input of its seed corpus tests/fuzz/corpus/<target>/ once,
#     as a regression test;
#  2. fuzzes it for a bounded time, starting from that corpus. New inputs go
#     to a scratch directory in the build tree, never to the repository.
# Prints, per target, executions, exec/s, coverage (libFuzzer's cov: and
# ft:) and findings, then a closing line "fuzz: N passed, M failed". Exits
# non-zero when any input crashed, leaked, ran out of memory, timed out or
# was slow, and prints the path of every such input.
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs N] [--target NAME]...
#                        [--regression-only]
#   --seconds N        fuzzing time per target (default 30)
#   --jobs N           targets fuzzed at a time (default 1)
#   --target NAME      only this target (repeatable), e.g. spool_fuzz
#   --regression-only  run the corpora, do not fuzz
# Environment: ABEXP_CLANG_BUILD_DIR (default build-clang, the build
# scripts/sanitize.sh shares), ABEXP_JOBS (build parallelism, default: all
# cores), ABEXP_FUZZ_WORK (scratch directory, default <build dir>/fuzz-work).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

seconds=30
jobs=1
targets=()
regression_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    --regression-only) regression_only=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz: unknown argument $1; see scripts/fuzz.sh --help" >&2; exit 2 ;;
  esac
done
case "$seconds$jobs" in
  *[!0-9]*) echo "fuzz: --seconds and --jobs take whole numbers" >&2; exit 2 ;;
esac
[ "$jobs" -ge 1 ] || jobs=1

if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$f" .cc)"); done
fi
for t in "${targets[@]}"; do
  if [ ! -f "tests/fuzz/$t.cc" ]; then
    echo "fuzz: no target $t (no tests/fuzz/$t.cc); targets: $(cd tests/fuzz && ls *_fuzz.cc | sed 's/\.cc$//' | tr '\n' ' ')" >&2
    exit 2
  fi
done

build=${ABEXP_CLANG_BUILD_DIR:-build-clang}
work=${ABEXP_FUZZ_WORK:-$build/fuzz-work}

# The fuzz targets build in the Clang build that scripts/sanitize.sh runs the
# tests in (scripts/clang-build.sh: ASan + UBSan + libFuzzer coverage).
ABEXP_CLANG_BUILD_DIR=$build scripts/clang-build.sh "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Limits shared by both passes. An input slower than slow_unit seconds is a
# finding too (libFuzzer writes it as slow-unit-*).
limits=(-timeout=25 -rss_limit_mb=2048 -report_slow_units=10)

# run_target NAME: both passes for one target; writes its report to
# $work/NAME/report and returns non-zero on any finding.
run_target() {
  local name=$1 bin="$build/fuzz/$1" corpus="tests/fuzz/corpus/$1"
  local dir="$work/$name"
  rm -rf "$dir/crashes" "$dir/regression.log" "$dir/fuzz.log"
  mkdir -p "$dir/corpus" "$dir/crashes"
  local report="$dir/report" failed=0 dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  : >"$report"

  local inputs=()
  if [ -d "$corpus" ]; then
    while IFS= read -r f; do inputs+=("$f"); done < <(find "$corpus" -type f | sort)
  fi
  if [ ${#inputs[@]} -eq 0 ]; then
    echo "fuzz: $name: FAILED: no seed corpus in $corpus" >>"$report"
    return 1
  fi
  # Regression: every seed input once (libFuzzer stops at the first crash).
  if "$bin" "${limits[@]}" -artifact_prefix="$dir/crashes/" "${inputs[@]}" \
      >"$dir/regression.log" 2>&1; then
    echo "fuzz: $name: corpus: ${#inputs[@]} inputs, no findings" >>"$report"
  else
    failed=1
    local input
    input=$(grep '^Running: ' "$dir/regression.log" | tail -1 | sed 's/^Running: //' || true)
    {
      echo "fuzz: $name: FAILED: corpus input ${input:-?} crashed or hung; log: $dir/regression.log"
      grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*property violated)' "$dir/regression.log" | sed 's/^/fuzz:   /' || true
      echo "fuzz:   reproduce: $bin $input"
    } >>"$report"
  fi

  if [ "$regression_only" = 0 ]; then
    if [ "$failed" = 1 ]; then
      echo "fuzz: $name: not fuzzed: its corpus already fails; fix that first" >>"$report"
    else
      local rc=0 started=$SECONDS
      "$bin" "${limits[@]}" "${dict[@]}" -max_total_time="$seconds" -max_len=32768 \
        -print_final_stats=1 -artifact_prefix="$dir/crashes/" \
        "$dir/corpus" "$corpus" >"$dir/fuzz.log" 2>&1 || rc=$?
      local execs rate cov ft added
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log")
      rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/fuzz.log")
      added=$(sed -n 's/^stat::new_units_added: *//p' "$dir/fuzz.log")
      cov=$(grep -o 'cov: [0-9]*' "$dir/fuzz.log" | tail -1 | sed 's/cov: //' || true)
      ft=$(grep -o 'ft: [0-9]*' "$dir/fuzz.log" | tail -1 | sed 's/ft: //' || true)
      local findings
      findings=$(find "$dir/crashes" -type f | sort)
      echo "fuzz: $name: fuzzed $((SECONDS - started))s of ${seconds}s: ${execs:-?} executions (${rate:-?}/s), cov: ${cov:-?} ft: ${ft:-?}, ${added:-?} new inputs, $(printf '%s' "$findings" | grep -c . || true) findings" >>"$report"
      if [ "$rc" != 0 ] || [ -n "$findings" ]; then
        failed=1
        {
          echo "fuzz: $name: FAILED: libFuzzer exited $rc; log: $dir/fuzz.log"
          grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*property violated)' "$dir/fuzz.log" | sed 's/^/fuzz:   /' || true
          for f in $findings; do echo "fuzz:   finding: $f (reproduce: $bin $f)"; done
        } >>"$report"
      fi
    fi
  fi
  return "$failed"
}

passed=0
failed=0
running=0
declare -A pids=()
finish_one() {
  local pid name rc=0
  wait -n -p pid "${!pids[@]}" || rc=$?
  name=${pids[$pid]}
  unset "pids[$pid]"
  running=$((running - 1))
  cat "$work/$name/report"
  if [ "$rc" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
mkdir -p "$work"
for t in "${targets[@]}"; do
  [ "$running" -lt "$jobs" ] || finish_one
  run_target "$t" &
  pids[$!]=$t
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do finish_one; done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
