# Throwaway servers for the test scripts, sourced by scripts/test-*.sh:
# Debian's PostgreSQL and Redis, data in a temporary directory, listening on
# loopback only, stopped (and their data removed) when the script exits.
# As root, PostgreSQL runs as the `postgres` user (it refuses to run as root).

services_work=$(mktemp -d /tmp/noom-services.XXXXXX)
chmod 711 "$services_work" # the postgres user reaches its own folder in it
services_stops=()
services_stop() {
    local cmd
    for cmd in "${services_stops[@]}"; do eval "$cmd" > /dev/null 2>&1 || true; done
    rm -rf "$services_work"
}
trap services_stop EXIT

# start_postgres PORT: sets POSTGRES_URL.
start_postgres() {
    local port=$1 bin as_owner=() dir="$services_work/pg"
    bin=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1 || true)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "PostgreSQL is not installed (apt-get install -y postgresql)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$dir"
        as_owner=(runuser -u postgres --)
    fi
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -A trust -U noom > "$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    services_stops+=("${as_owner[*]} $bin/pg_ctl -D $dir/data -m immediate stop")
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400" start > /dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
    POSTGRES_URL="postgres://noom@127.0.0.1:$port/postgres"
}

# start_redis PORT: sets REDIS_URL.
start_redis() {
    local port=$1 dir="$services_work/redis"
    if ! command -v redis-server > /dev/null; then
        echo "Redis is not installed (apt-get install -y redis-server)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    services_stops+=("kill \$(cat $dir/redis.pid)")
    local i
    for i in $(seq 50); do
        redis-cli -p "$port" ping > /dev/null 2>&1 && break
        sleep 0.1
    done
    echo "Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=') on 127.0.0.1:$port"
    REDIS_URL="redis://127.0.0.1:$port/"
}
