#!/usr/bin/env bash
# Runs the Rust core suite (tests/core) against the PostgreSQL store: starts a
# throwaway PostgreSQL server (Debian's package; data in a temporary
# directory, on loopback, as the `postgres` user when run as root), points the
# tests at it with TEST_NOOM_POSTGRES_URL, and stops it afterwards.
#
#   bash scripts/test-postgres.sh            # as .ci/run does
#   bash scripts/test-postgres.sh -- filter  # extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "test-postgres: PostgreSQL is not installed (apt-get install -y postgresql)" >&2
    exit 1
fi
port=${TEST_NOOM_POSTGRES_PORT:-55432}
work=$(mktemp -d /tmp/noom-pg.XXXXXX)
as_owner=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres "$work"
    as_owner=(runuser -u postgres --)
fi
stop() {
    "${as_owner[@]}" "$bin/pg_ctl" -D "$work/data" -m immediate stop > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT
"${as_owner[@]}" "$bin/initdb" -D "$work/data" -A trust -U noom > "$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $work -c max_connections=400" start > /dev/null ||
    { cat "$work/server.log" >&2; exit 1; }
echo "test-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
shift_args=()
if [ "${1:-}" = "--" ]; then
    shift
    shift_args=("$@")
fi
TEST_NOOM_POSTGRES_URL="postgres://noom@127.0.0.1:$port/postgres" cargo test --test core -- "${shift_args[@]}"
