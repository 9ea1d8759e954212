#!/usr/bin/env bash
# `scrip load` against one scrip-server pinned to CPU 0, per crypto backend and store
# (BENCHMARKS.md, "RSA backends over HTTP"). The load tool runs unpinned while it mints
# (blinding is the wallet's work, done before anything is timed) and is pinned to CPU 1
# (`taskset -a -p`) as soon as it prints "redeeming", so the timed uploads never take the
# server's core; `--server-cores 1` makes `fraction_of_verify_limit` redemptions per second
# over one core's coin verifications per second (measured by the tool on the fast backend,
# before the timed phase and again after it, and averaged: this VM's speed drifts by 10-20 %
# within a run; its two vCPUs verify at the same rate, so where the tool runs does not
# matter).
# Issuance (blind withdrawals over HTTP) is timed by the tool apart from the blinding, on
# the same pinned server. Needs the release binaries (`cargo build --release --bins`) and
# `taskset` (util-linux). Prints one line per run: backend, store, shape, server binary
# and its CPU ticks (below), then the tool's JSON.
#
# BACKENDS (fast rustcrypto), STORES (redb), SHAPES ("20x10" = coins per payment x payments
# per batch), COINS (60000), MERCHANTS (16), ROUNDS (1) adjust it. SWAP=0 skips the load
# tool's swap phase (a smaller claims table, and half the minting time). SERVERS (space
# separated server binaries, default "$T/scrip-server") alternates builds within each
# round, for a before/after comparison on this noisy machine. Each line also gives the
# server's CPU time over the timed phase (utime + stime from /proc, in clock ticks; every
# minted coin is redeemed before the 60 s are up), which depends less on what the
# machine's other tenants do than redemptions per second, and the size of the server's
# data directory once it has stopped (`data_dir_bytes`: keys and store, in bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${T:-target/release}
SERVERS=${SERVERS:-$T/scrip-server}
SWAP=${SWAP:-1}
BACKENDS=${BACKENDS:-fast rustcrypto}
STORES=${STORES:-redb}
SHAPES=${SHAPES:-20x10}
COINS=${COINS:-60000}
MERCHANTS=${MERCHANTS:-16}
ROUNDS=${ROUNDS:-1}
export RUST_LOG=warn
D=$(mktemp -d /tmp/scrip-backend-load.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a process
run() { # server backend store cpp ppb
  local binary=$1 backend=$2 store=$3 cpp=$4 ppb=$5 port=$((20000 + RANDOM % 20000))
  local dir="$D/$backend-$store-$port" swap=() started=0
  if [ "$SWAP" = 0 ]; then swap=(--no-swap); fi
  taskset -c 0 "$binary" --data-dir "$dir" --listen "127.0.0.1:$port" \
    --denominations 1,2,5,10 --store "$store" --crypto-backend "$backend" 2>"$dir.server.log" &
  local server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  "$T/scrip" load --server "http://127.0.0.1:$port" --data-dir "$dir" --coins "$COINS" \
    --duration 60 --merchants "$MERCHANTS" --bincode --coins-per-payment "$cpp" \
    --payments-per-batch "$ppb" --server-cores 1 "${swap[@]}" >"$dir.json" 2>"$dir.err" &
  local load=$!
  while kill -0 "$load" 2>/dev/null; do
    if grep -q "redeeming for" "$dir.err" 2>/dev/null; then
      taskset -a -p -c 1 "$load" >/dev/null
      started=$(ticks "$server")
      break
    fi
    sleep 0.05
  done
  wait "$load" || { cat "$dir.err"; exit 1; }
  local cpu=$(($(ticks "$server") - started))
  kill "$server"
  wait "$server" 2>/dev/null || true
  local bytes=$(du -sb "$dir" | cut -f1)
  echo "backend=$backend store=$store shape=${cpp}x${ppb} server=$binary server_cpu_ticks=$cpu data_dir_bytes=$bytes $(tail -1 "$dir.json")"
}
for _ in $(seq "$ROUNDS"); do
  for store in $STORES; do
    for shape in $SHAPES; do
      for backend in $BACKENDS; do
        for binary in $SERVERS; do
          run "$binary" "$backend" "$store" "${shape%x*}" "${shape#*x}"
        done
      done
    done
  done
done
