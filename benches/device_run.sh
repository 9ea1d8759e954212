#!/usr/bin/env bash
# What to run when a many-core machine is lent (issue 18): the machine, the RSA table
# (`rsa` bench, fast backend, next to `openssl speed` in the same process, pinned to one
# idle CPU), then `scrip load` with redb over HTTP through benches/scaling_load.sh: the
# server pinned to one CPU (and to four) whose SMT siblings stay idle, the load tool on
# every other core. Results under OUT (default /tmp/scrip-device), a summary on stdout.
#
# Everything it runs comes from B (default target/devbins), built and stripped here so the
# device needs no toolchain, with the shared libraries and loader they were linked
# against in B/lib (any glibc on the device):
#   cargo build --release --locked --bins && cargo bench --locked --bench rsa --no-run
#   mkdir -p target/devbins/lib && cd target/devbins
#   strip -o scrip-server ../release/scrip-server; strip -o scrip ../release/scrip
#   strip -o rsa-bench ../release/deps/rsa-<hash>      (the path cargo bench printed)
#   cp /usr/bin/openssl /usr/bin/taskset .
#   cp /lib/x86_64-linux-gnu/{libssl.so.3,libcrypto.so.3,libgcc_s.so.1,libm.so.6,libc.so.6} \
#      /lib64/ld-linux-x86-64.so.2 lib/
# ROUNDS (3) one-CPU redb runs, COINS (200000) per one-CPU run, FOUR (1: one run on four
# CPUs with FOUR_COINS coins, default 2 x COINS), ISSUANCE (1: a run without handover, the
# server on one CPU throughout, for issuance on one core), RSA (1) adjust it. On the
# 16-vCPU device of 2026-11-30 a 200 000-coin round took about 45 s (setup included) and
# the defaults about 5.5 min; 300 000-coin rounds with a 1 200 000-coin four-CPU round
# did not fit 8 min.
set -uo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${B:-target/devbins}")
L=$B/lib
OUT=${OUT:-/tmp/scrip-device}
ROUNDS=${ROUNDS:-3} COINS=${COINS:-200000} FOUR=${FOUR:-1} FOUR_COINS=${FOUR_COINS:-$((2 * ${COINS:-200000}))} ISSUANCE=${ISSUANCE:-1} RSA=${RSA:-1}
mkdir -p "$OUT"
X=("$L/ld-linux-x86-64.so.2" --library-path "$L")

# `openssl` (for the bench's `openssl speed`) and, where missing, `taskset`: the carried
# ones, under the carried loader, so OpenSSL's figures come from the same libcrypto.
W=$(mktemp -d /tmp/scrip-device-bin.XXXX)
printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "${X[0]}" "$L" "$B/openssl" >"$W/openssl"
if ! command -v taskset >/dev/null; then
  printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "${X[0]}" "$L" "$B/taskset" >"$W/taskset"
fi
chmod +x "$W"/*
export PATH=$W:$PATH

echo "== machine"
nproc
lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node|MHz' || true
grep -o -w -E 'sha_ni|adx|bmi2|avx2|avx512f|avx512ifma' /proc/cpuinfo | sort | uniq -c || true
uname -r
openssl version

# CPUs this shell may use, and each one's physical core.
expand() { local part; for part in ${1//,/ }; do
  if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
done; }
allowed=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
mapfile -t cpus < <(expand "$allowed")
core() {
  local t=/sys/devices/system/cpu/cpu$1/topology
  echo "$(cat "$t/physical_package_id" 2>/dev/null || echo 0):$(cat "$t/core_id" 2>/dev/null || echo "$1")"
}
pick() { # n: sets $server_cpus (n CPUs on distinct cores) and $load_cpus (the other cores)
  local n=$1 c taken=" " s=() l=()
  for c in "${cpus[@]}"; do
    if [ "${#s[@]}" -lt "$n" ] && [[ $taken != *" $(core "$c") "* ]]; then
      s+=("$c")
      taken+="$(core "$c") "
    fi
  done
  for c in "${cpus[@]}"; do [[ $taken == *" $(core "$c") "* ]] || l+=("$c"); done
  server_cpus=$(IFS=,; echo "${s[*]}") load_cpus=$(IFS=,; echo "${l[*]}")
}
pick 1
echo "allowed=$allowed one: server=$server_cpus load=$load_cpus"

if [ "$RSA" = 1 ]; then
  echo "== rsa bench (fast backend), pinned to CPU ${cpus[-1]}"
  CRITERION_HOME=$OUT/criterion taskset -c "${cpus[-1]}" "${X[@]}" "$B/rsa-bench" --bench fast \
    >"$OUT/rsa.log" 2>&1
  sed -n '/^openssl speed/,$p' "$OUT/rsa.log"
fi

load() { # label runs...: benches/scaling_load.sh with RUNS, its lines to stdout and a file
  B=$B LIB=$L RUNS=$2 HANDOVER=${HANDOVER:-1} timeout 400 bash benches/scaling_load.sh \
    2>&1 | tee -a "$OUT/$1.log" | grep -E '^(label=|nproc=|server |load )'
}
if [ "$ISSUANCE" = 1 ]; then
  echo "== one CPU throughout (issuance on one core): 30000 coins"
  HANDOVER=0 load issuance "one-pinned:scrip-server:redb:$server_cpus:$load_cpus:20:50:30000"
fi
echo "== one CPU, handover, $ROUNDS rounds of $COINS coins"
runs=""
for _ in $(seq "$ROUNDS"); do runs+="one:scrip-server:redb:$server_cpus:$load_cpus:20:50:$COINS "; done
load one "$runs"
if [ "$FOUR" = 1 ]; then
  pick 4
  echo "== four CPUs ($server_cpus), handover, $FOUR_COINS coins"
  load four "four:scrip-server:redb:$server_cpus:$load_cpus:20:50:$FOUR_COINS"
fi
rm -rf "$W"
