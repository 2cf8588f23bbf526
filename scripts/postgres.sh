#!/usr/bin/env bash
# A private PostgreSQL (Debian's, any version installed) as a local process, for the fleet
# tests, benches and demo.
#   scripts/postgres.sh start DIR PORT  -> a cluster in DIR (made once), listening on
#                                          127.0.0.1:PORT and on a socket in DIR, trusting local
#                                          connections; database `emcee` made. As root, the
#                                          server runs as the `postgres` user (it refuses root).
#   scripts/postgres.sh stop DIR
set -euo pipefail
cmd=$1 dir=$(realpath -m "$2")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: PostgreSQL is not installed (apt install postgresql)" >&2; exit 1; }
as_owner=()
if [ "$(id -u)" = 0 ]; then
  as_owner=(runuser -u postgres --)
fi
case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  fi
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=on" start >/dev/null
  "${as_owner[@]}" psql -h "$dir" -p "$port" -U postgres -qtAc "SELECT 1 FROM pg_database WHERE datname = 'emcee'" | grep -q 1 ||
    "${as_owner[@]}" psql -h "$dir" -p "$port" -U postgres -qc "CREATE DATABASE emcee"
  ;;
stop)
  [ -f "$dir/data/postmaster.pid" ] && "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
esac
