#!/usr/bin/env bash
# `scrip load` against one scrip-server pinned to CPU 0, per crypto backend and store
# (BENCHMARKS.md, "RSA backends over HTTP"). The load tool runs unpinned while it mints
# (blinding is the wallet's work, done before anything is timed) and is pinned to CPU 1
# (`taskset -a -p`) as soon as it prints "redeeming", so the timed uploads never take the
# server's core; `--server-cores 1` makes `fraction_of_verify_limit` redemptions per second
# over one core's coin verifications per second (measured by the tool on the fast backend).
# Issuance (blind withdrawals over HTTP) is timed by the tool apart from the blinding, on
# the same pinned server. Needs the release binaries (`cargo build --release --bins`) and
# `taskset` (util-linux). Prints one line per run: backend, store, shape, then the tool's
# JSON.
#
# BACKENDS (fast rustcrypto), STORES (redb), SHAPES ("20x10" = coins per payment x payments
# per batch), COINS (60000), MERCHANTS (16), ROUNDS (1) adjust it.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${T:-target/release}
BACKENDS=${BACKENDS:-fast rustcrypto}
STORES=${STORES:-redb}
SHAPES=${SHAPES:-20x10}
COINS=${COINS:-60000}
MERCHANTS=${MERCHANTS:-16}
ROUNDS=${ROUNDS:-1}
export RUST_LOG=warn
D=$(mktemp -d /tmp/scrip-backend-load.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"' EXIT
run() { # backend store cpp ppb
  local backend=$1 store=$2 cpp=$3 ppb=$4 port=$((20000 + RANDOM % 20000))
  local dir="$D/$backend-$store-$port"
  taskset -c 0 "$T/scrip-server" --data-dir "$dir" --listen "127.0.0.1:$port" \
    --denominations 1,2,5,10 --store "$store" --crypto-backend "$backend" 2>"$dir.server.log" &
  local server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  "$T/scrip" load --server "http://127.0.0.1:$port" --data-dir "$dir" --coins "$COINS" \
    --duration 60 --merchants "$MERCHANTS" --bincode --coins-per-payment "$cpp" \
    --payments-per-batch "$ppb" --server-cores 1 >"$dir.json" 2>"$dir.err" &
  local load=$!
  while kill -0 "$load" 2>/dev/null; do
    if grep -q "redeeming for" "$dir.err" 2>/dev/null; then
      taskset -a -p -c 1 "$load" >/dev/null
      break
    fi
    sleep 0.05
  done
  wait "$load" || { cat "$dir.err"; exit 1; }
  kill "$server"
  wait "$server" 2>/dev/null || true
  echo "backend=$backend store=$store shape=${cpp}x${ppb} $(tail -1 "$dir.json")"
}
for _ in $(seq "$ROUNDS"); do
  for store in $STORES; do
    for shape in $SHAPES; do
      for backend in $BACKENDS; do
        run "$backend" "$store" "${shape%x*}" "${shape#*x}"
      done
    done
  done
done
