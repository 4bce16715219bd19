#!/usr/bin/env bash
# Run a command with a throw-away PostgreSQL server on a free loopback port:
#   .ci/postgres.sh COMMAND [ARGS...]
# Installs Debian's postgresql if it is missing (needs root), runs initdb and pg_ctl as the
# postgres user (they refuse root), exports RECFORGET_TEST_PG_URL=postgresql+psycopg://... for
# COMMAND, and stops the server and removes its data directory afterwards. Without root and
# without PostgreSQL it runs COMMAND with the variable unset (the PostgreSQL tests then skip
# and say why).
set -euo pipefail

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

PGBIN="$(find_bin || true)"
if [[ -z "$PGBIN" && "$(id -u)" == 0 ]]; then
    echo "postgres.sh: installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    PGBIN="$(find_bin)"
fi
if [[ -z "$PGBIN" ]]; then
    echo "postgres.sh: no PostgreSQL and not root: running without it" >&2
    exec "$@"
fi

AS=()
if [[ "$(id -u)" == 0 ]]; then AS=(runuser -u postgres --); fi
DATA="$(mktemp -d /tmp/recforget-pg.XXXXXX)"
chmod 755 "$DATA"
[[ "$(id -u)" == 0 ]] && chown postgres: "$DATA"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

cleanup() {
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DATA"
}
trap cleanup EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$DATA/db" -U postgres --auth=trust -E UTF8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA/db" -l "$DATA/log" -w -t 60 \
    -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
export RECFORGET_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
echo "postgres.sh: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') at $RECFORGET_TEST_PG_URL" >&2
"$@"
