#!/usr/bin/env bash
# `scrip load` against redb on one server, and against one and two scrip-servers sharing
# one throwaway PostgreSQL (fsync on), alternated round by round; prints one JSON line per
# run (BENCHMARKS.md, "PostgreSQL and two servers"). Needs the release binaries
# (`cargo build --release --bins`) and the PostgreSQL binaries (initdb, pg_ctl), run as
# the `postgres` user when this runs as root. ROUNDS, COINS, DURATION, MERCHANTS adjust it.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${T:-target/release}
PGBIN=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
D=$(mktemp -d /tmp/scrip-cluster-load.XXXX)
chmod 755 "$D"
[ "$(id -u)" = 0 ] && chown postgres: "$D"
PORT=$((20000 + RANDOM % 20000))
as_postgres "$PGBIN/initdb" -D "$D/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$D/data" -l "$D/pglog" -w \
  -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=512MB" start >/dev/null
trap 'kill $(jobs -p) 2>/dev/null || true; as_postgres "$PGBIN/pg_ctl" -D "$D/data" -m immediate stop >/dev/null || true; rm -rf "$D"' EXIT
URL="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
TOKEN=bench-token
export RUST_LOG=warn
"$T/scrip-server" keys init --keys-dir "$D/keys" --database-url "$URL" >/dev/null
start() { # name port args...
  local name=$1 port=$2; shift 2
  "$T/scrip-server" --listen "127.0.0.1:$port" --data-dir "$D/$name" --operator-token "$TOKEN" "$@" 2>"$D/$name.log" &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
  echo "server $name did not start"; cat "$D/$name.log"; exit 1
}
start a 18081 --store postgres --database-url "$URL" --keys-dir "$D/keys"
start b 18082 --store postgres --database-url "$URL" --keys-dir "$D/keys"
start r 18083 --store redb
load() { # label servers root-key
  echo "$1 $("$T/scrip" load --server "$2" --root-key "$3" --operator-token "$TOKEN" \
    --duration "${DURATION:-20}" --coins "${COINS:-20000}" --merchants "${MERCHANTS:-8}" --quiet 2>/dev/null | tail -1)"
}
for _ in $(seq "${ROUNDS:-2}"); do
  load redb-1 http://127.0.0.1:18083 "$D/r/root-key.pem"
  load postgres-1 http://127.0.0.1:18081 "$D/a/root-key.pem"
  load postgres-2 http://127.0.0.1:18081,http://127.0.0.1:18082 "$D/a/root-key.pem"
done
