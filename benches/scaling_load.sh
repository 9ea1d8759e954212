#!/usr/bin/env bash
# `scrip load` on a many-core machine (a lent device): the server pinned to SERVER_CPUS,
# the load tool to LOAD_CPUS for the whole run (minting included, so it never takes a
# server core), `--server-cores` set to the number of server CPUs. Prints one line per run
# like benches/backend_load.sh (label, store, CPUs, shape, server CPU ticks over the timed
# phase, the tool's JSON without the issuance and swap objects).
#
# B (directory holding scrip-server, scrip, and optionally OLD_SERVER), LIB (prepended to
# LD_LIBRARY_PATH, for a machine without libssl 3), RUNS (space-separated
# "label:server-binary:store:server-cpus:load-cpus:coins-per-payment:payments-per-batch:coins").
# To carry release binaries to a device (64 MiB limit), strip them first:
#   strip -o target/devbins/scrip-server target/release/scrip-server   (and scrip)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-target/release}
export LD_LIBRARY_PATH=${LIB:-}${LIB:+:}${LD_LIBRARY_PATH:-} RUST_LOG=warn
RUNS=${RUNS:-"one:scrip-server:redb:0:2-15:20:50:80000 one:scrip-server:memory:0:2-15:20:50:80000 four:scrip-server:redb:0-3:4-15:20:50:200000 four:scrip-server:memory:0-3:4-15:20:50:200000"}
D=$(mktemp -d /tmp/scrip-scaling-load.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
up() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
count() { # CPUs in a taskset list such as 0-3,8
  local n=0 part
  for part in ${1//,/ }; do
    if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
  done
  echo "$n"
}
nproc
for spec in $RUNS; do
  IFS=: read -r label bin store scpu lcpu cpp ppb coins <<<"$spec"
  port=$((20000 + RANDOM % 20000)) dir="$D/$label-$store-$RANDOM" started=0
  taskset -c "$scpu" "$B/$bin" --data-dir "$dir" --listen "127.0.0.1:$port" \
    --denominations 1,2,5,10 --store "$store" --crypto-backend fast 2>"$dir.server.log" &
  server=$!
  up "$port" || { echo "server $label did not start"; cat "$dir.server.log"; continue; }
  taskset -c "$lcpu" "$B/scrip" load --server "http://127.0.0.1:$port" --data-dir "$dir" \
    --coins "$coins" --duration 60 --merchants 16 --bincode --coins-per-payment "$cpp" \
    --payments-per-batch "$ppb" --server-cores "$(count "$scpu")" --no-swap \
    >"$dir.json" 2>"$dir.err" &
  load=$!
  while kill -0 "$load" 2>/dev/null; do
    if grep -q "redeeming for" "$dir.err" 2>/dev/null; then started=$(ticks "$server"); break; fi
    sleep 0.02
  done
  wait "$load" || { echo "load $label failed"; tail -5 "$dir.err"; }
  cpu=$(($(ticks "$server") - started))
  kill "$server"
  wait "$server" 2>/dev/null
  echo "label=$label store=$store server_cpus=$scpu shape=${cpp}x${ppb} coins=$coins server_cpu_ticks=$cpu $(tail -1 "$dir.json" | sed -E 's/"(issuance|swap)":\{[^}]*\}//g')"
  rm -rf "$dir"
done
