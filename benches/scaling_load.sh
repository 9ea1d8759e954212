#!/usr/bin/env bash
# `scrip load` on a many-core machine (a lent device): the server pinned to SERVER_CPUS,
# the load tool to LOAD_CPUS for the whole timed phase, `--server-cores` set to the number
# of server CPUs. Prints one line per run like benches/backend_load.sh (label, store,
# CPUs, shape, server CPU ticks over the timed phase, the tool's JSON).
#
# Minting is the slow part: the server blind-signs each coin (0.3-0.4 ms) and the tool
# blinds it (~1 ms, pure Rust), while redemption takes ~30 µs a coin. So by default each run
# hands over (`scrip load --redeem-server`): a first server on MINT_CPUS (default: every
# CPU this shell may use) mints the coins and registers the merchants, the tool sharing those CPUs; on the
# tool's "handing over" line the tool is pinned to LOAD_CPUS, the minting server is
# stopped (SIGTERM, a clean shutdown) and the server to measure starts pinned to
# SERVER_CPUS on the same data directory, with as many runtime workers as it has CPUs
# (TOKIO_WORKER_THREADS; tokio would size its pool the same from the affinity mask).
# Its CPU ticks are counted from the moment it answers (it does nothing else before the
# uploads). The minting server gets MINT_CONCURRENCY (16) blind withdrawals at once, so
# its issuance figure is that of every core, not of the measured server. HANDOVER=0 runs one server pinned to SERVER_CPUS throughout (minting
# included, on one core about 1 000 coins/s), the tool on LOAD_CPUS.
#
# B (directory holding scrip-server and scrip), LIB (a directory of shared libraries for
# a machine whose own may not fit the binaries: with LIB/ld-linux-x86-64.so.2 every
# binary runs under that loader with --library-path LIB, else LIB is prepended to
# LD_LIBRARY_PATH), RUNS (space-separated
# "label:server-binary:store:server-cpus:load-cpus:coins-per-payment:payments-per-batch:coins").
# To carry release binaries to a device (64 MiB limit), strip them first:
#   strip -o target/devbins/scrip-server target/release/scrip-server   (and scrip)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-target/release}
LIB=${LIB:-}
HANDOVER=${HANDOVER:-1}
MINT_CONCURRENCY=${MINT_CONCURRENCY:-16}
MINT_CPUS=${MINT_CPUS:-$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)}
export RUST_LOG=warn
X=() # how binaries are started
if [ -n "$LIB" ] && [ -x "$LIB/ld-linux-x86-64.so.2" ]; then
  X=("$LIB/ld-linux-x86-64.so.2" --library-path "$LIB")
elif [ -n "$LIB" ]; then
  export LD_LIBRARY_PATH=$LIB${LD_LIBRARY_PATH:+:}${LD_LIBRARY_PATH:-}
fi
RUNS=${RUNS:-"one:scrip-server:redb:0:2-15:20:50:80000 one:scrip-server:memory:0:2-15:20:50:80000 four:scrip-server:redb:0-3:4-15:20:50:200000 four:scrip-server:memory:0-3:4-15:20:50:200000"}
D=$(mktemp -d /tmp/scrip-scaling-load.XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
up() { for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
count() { # CPUs in a taskset list such as 0-3,8
  local n=0 part
  for part in ${1//,/ }; do
    if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
  done
  echo "$n"
}
serve() { # cpus port dir store binary: starts a server in the background, sets $server
  TOKIO_WORKER_THREADS=$(count "$1") taskset -c "$1" "${X[@]}" "$B/$5" --data-dir "$3" \
    --listen "127.0.0.1:$2" --denominations 1,2,5,10 --store "$4" --crypto-backend fast \
    2>>"$3.server.log" &
  server=$!
}
waitfor() { # pattern file pid: polls until the pattern is in the file or pid exits
  while kill -0 "$3" 2>/dev/null; do
    grep -q "$1" "$2" 2>/dev/null && return 0
    sleep 0.02
  done
  return 1
}
echo "nproc=$(nproc) mint_cpus=$MINT_CPUS handover=$HANDOVER"
for spec in $RUNS; do
  IFS=: read -r label bin store scpu lcpu cpp ppb coins <<<"$spec"
  port=$((20000 + RANDOM % 20000)) dir="$D/$label-$store-$RANDOM" started=0
  redeem_port=$((port + 1)) handover=()
  if [ "$HANDOVER" = 1 ]; then
    serve "$MINT_CPUS" "$port" "$dir" "$store" "$bin"
    handover=(--redeem-server "http://127.0.0.1:$redeem_port" --mint-concurrency "$MINT_CONCURRENCY")
    tool_cpus=$MINT_CPUS
  else
    serve "$scpu" "$port" "$dir" "$store" "$bin"
    tool_cpus=$lcpu
  fi
  up "$port" || { echo "server $label did not start"; cat "$dir.server.log"; continue; }
  taskset -c "$tool_cpus" "${X[@]}" "$B/scrip" load --server "http://127.0.0.1:$port" \
    "${handover[@]}" --data-dir "$dir" --coins "$coins" --duration 60 --merchants 16 \
    --bincode --coins-per-payment "$cpp" --payments-per-batch "$ppb" \
    --server-cores "$(count "$scpu")" --no-swap >"$dir.json" 2>"$dir.err" &
  load=$!
  if [ "$HANDOVER" = 1 ]; then
    if waitfor "handing over" "$dir.err" "$load"; then
      taskset -a -p -c "$lcpu" "$load" >/dev/null
      kill "$server"
      wait "$server" 2>/dev/null
      serve "$scpu" "$redeem_port" "$dir" "$store" "$bin"
      up "$redeem_port" || { echo "server $label did not restart"; tail -5 "$dir.server.log"; }
      started=$(ticks "$server")
    fi
  elif waitfor "redeeming for" "$dir.err" "$load"; then
    started=$(ticks "$server")
  fi
  wait "$load" || { echo "load $label failed"; tail -5 "$dir.err"; }
  cpu=$(($(ticks "$server") - started))
  kill "$server"
  wait "$server" 2>/dev/null
  echo "label=$label store=$store server_cpus=$scpu load_cpus=$lcpu shape=${cpp}x${ppb} coins=$coins server_cpu_ticks=$cpu $(tail -1 "$dir.json")"
  rm -rf "$dir" "$dir".*
done
