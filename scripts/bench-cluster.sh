#!/usr/bin/env bash
# The cluster benchmark of docs/benchmarks.md ("Several nodes"): the same
# chat load (noom-load chat) on one sled node alone, then on 1, 2 and 3 nodes
# sharing a throwaway Redis and PostgreSQL (scripts/lib/services.sh), with
# the members of every room spread over the nodes. Prints noom-load's report
# for each, and the CPU that Redis and PostgreSQL used during the run.
#
#   bash scripts/bench-cluster.sh                 # release build first
#   RATE=5000 DURATION=15 ROUNDS=1 COUNTS="1 2 3" SLED=1 bash scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

RATE=${RATE:-5000}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-1}
ROOMS=${ROOMS:-20}
MEMBERS=${MEMBERS:-10}
COUNTS=${COUNTS:-1 2 3}
SLED=${SLED:-1}
cargo build --release --bin noom --bin noom-load
start_postgres "${BENCH_POSTGRES_PORT:-55442}"
start_redis "${BENCH_REDIS_PORT:-56389}"
hash=$(printf 'bench admin\n' | ./target/release/noom hash-password)

# CPU seconds (user + system) of every process whose command is $1.
cpu_of() {
    local total=0 pid ticks
    for pid in $(pgrep -x "$1" || true); do
        ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2> /dev/null || echo 0)
        total=$((total + ticks))
    done
    echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}

nodes=()
stop_nodes() {
    local pid
    for pid in "${nodes[@]}"; do kill "$pid" 2> /dev/null || true; done
    for pid in "${nodes[@]}"; do wait "$pid" 2> /dev/null || true; done
    nodes=()
}
trap 'stop_nodes; services_stop' EXIT

# start_node PORT [ENV...]: a release node on 127.0.0.1:PORT.
start_node() {
    local port=$1
    shift
    env "$@" NOOM_SERVER_CONNECTIONS_PER_IP=100000 NOOM_TURN_LISTEN=127.0.0.1:0 \
        NOOM_SFU_LISTEN=127.0.0.1:0 RUST_LOG=warn \
        ./target/release/noom --http "127.0.0.1:$port" --data-dir "$services_work/node-$port" &
    nodes+=($!)
    local i
    for i in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && return
        sleep 0.1
    done
    echo "node on $port did not start" >&2
    exit 1
}

run_load() {
    local urls=$1 redis0 pg0 redis1 pg1
    redis0=$(cpu_of redis-server)
    pg0=$(cpu_of postgres)
    ./target/release/noom-load chat --url "$urls" --rooms "$ROOMS" --members "$MEMBERS" \
        --rate "$RATE" --duration "$DURATION" --warmup 3
    redis1=$(cpu_of redis-server)
    pg1=$(cpu_of postgres)
    echo "services       Redis CPU $(echo "$redis1 - $redis0" | bc) s, PostgreSQL CPU $(echo "$pg1 - $pg0" | bc) s (whole run: set-up, warm-up, window, drain)"
}

for round in $(seq "$ROUNDS"); do
    if [ "$SLED" = 1 ]; then
        echo "=== round $round: one node alone, sled"
        start_node 3200
        run_load http://127.0.0.1:3200
        stop_nodes
    fi
    for n in $COUNTS; do
        schema="bench_${round}_$n"
        echo "=== round $round: $n node(s), Redis + PostgreSQL (schema $schema)"
        urls=()
        for i in $(seq "$n"); do
            port=$((3200 + i))
            start_node "$port" NOOM_CLUSTER_REDIS_URL="$REDIS_URL" NOOM_CLUSTER_NAME="bench$round$n" \
                NOOM_CLUSTER_NODE_ID="node$i" NOOM_STORE_BACKEND=postgres \
                NOOM_STORE_POSTGRES_URL="$POSTGRES_URL" NOOM_STORE_POSTGRES_SCHEMA="$schema" \
                NOOM_TURN_SECRET="bench secret shared by the nodes" NOOM_ADMIN_PASSWORD_HASH="$hash"
            urls+=("http://127.0.0.1:$port")
        done
        run_load "$(IFS=,; echo "${urls[*]}")"
        stop_nodes
    done
done
