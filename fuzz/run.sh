#!/usr/bin/env bash
# Runs every fuzz target for SECONDS_PER_TARGET seconds (default 60), one job each, and
# prints per target the executions, executions per second and whether it crashed.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      # from anywhere
#   fuzz/run.sh --seeds                   # regenerate fuzz/seeds/ (examples/gen_seeds.rs)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Crashes land in fuzz/artifacts/<target>/; the growing corpus in fuzz/corpus/<target>/
# (seeded from fuzz/seeds/<target>/ and fuzz/regressions/<target>/). Logs: fuzz/artifacts/<target>.log.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--seeds" ]]; then
  (cd fuzz && cargo +nightly run --release --example gen_seeds)
  exit $?
fi

SECONDS_PER_TARGET="${1:-60}"
TARGETS=(decode_tokens http_bodies merchant_accept)

# Build once (all targets, release with debug assertions, AddressSanitizer).
cargo +nightly fuzz build || exit 1

status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  seeds=()
  for d in "fuzz/seeds/$t" "fuzz/regressions/$t"; do
    [[ -d "$d" ]] && seeds+=("$d")
  done
  echo "== $t: ${SECONDS_PER_TARGET}s (log: $log)"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  [[ -z "$execs" ]] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  per_s=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  [[ -z "$per_s" ]] && per_s=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  if [[ $rc -eq 0 ]]; then
    result="no crash"
  else
    status=1
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')
    result="CRASHED (exit $rc${artifact:+, input: $artifact})"
  fi
  summary+=("$(printf '%-16s executions: %-10s exec/s: %-7s %s' "$t" "${execs:-?}" "${per_s:-?}" "$result")")
done

echo
printf '%s\n' "${summary[@]}"
exit $status
