#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on a loopback port for the test suite and prints its URL.
# Usage: eval "$(bash deploy/pg-test-server.sh)"   -> exports CATALOGUE_TEST_PG_URL
#        bash deploy/pg-test-server.sh stop          -> stops the server in PG_TEST_DIR
set -euo pipefail
PORT="${PG_TEST_PORT:-55432}"
DIR="${PG_TEST_DIR:-/tmp/biobank-pg-test}"
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi
RUN=()
if [ "$(id -u)" = "0" ]; then RUN=(runuser -u postgres --); fi
if [ "${1:-}" = "stop" ]; then
  if [ -f "$DIR/postmaster.pid" ]; then "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null; fi
  exit 0
fi
if [ ! -f "$DIR/PG_VERSION" ]; then
  rm -rf "$DIR"; mkdir -p "$DIR"
  [ "$(id -u)" = "0" ] && chown postgres "$DIR"
  "${RUN[@]}" "$BIN/initdb" -D "$DIR" -U postgres --auth=trust >/dev/null
fi
if ! "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
echo "export CATALOGUE_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
