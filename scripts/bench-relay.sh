#!/usr/bin/env bash
# Relay benchmark: coturn and Noom on the same machine, same client
# (coturn's turnutils_uclient), same load. Loopback only. Not a test.
# Usage: scripts/bench-relay.sh [clients] [messages] [flood-seconds]
# BENCH_SERVER_ENV="VAR=value ..." adds environment to Noom only (e.g. TOKIO_WORKER_THREADS=1).
# RELAY_BENCH_INTERVAL=0 lets the clients send unpaced (turnutils_uclient -z 0; default 1 ms).
# Needs: the coturn package, `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-20}; messages=${2:-5000}; flood=${3:-60}
secret="bench-relay-shared-secret"
data=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$data"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

# The peer is on loopback (this host): Noom relays to its own addresses only on
# relay ports (49152-65535), so the peer takes one of them.
turnutils_peer -L 127.0.0.1 -p 49480 >/dev/null 2>&1 & pids+=($!)

turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port=3578 \
    --allow-loopback-peers --no-cli --no-tls --no-dtls --use-auth-secret \
    --static-auth-secret="$secret" --realm=noom --min-port=40000 --max-port=45000 \
    --log-file=stdout >"$data/coturn.log" 2>&1 & coturn=$!; pids+=($coturn)

NOOM_SFU_LISTEN=127.0.0.1:0 NOOM_TURN_LISTEN=127.0.0.1:3579 NOOM_TURN_SECRET="$secret" NOOM_TURN_ALLOW_PEERS=127.0.0.0/8 \
NOOM_TURN_BANDWIDTH_KBPS=0 NOOM_TURN_MAX_ALLOCATIONS_PER_USER=1000 RUST_LOG=warn \
    env ${BENCH_SERVER_ENV:-} ./target/release/noom --http 127.0.0.1:3580 --data-dir "$data/noom" >"$data/noom.log" 2>&1 & noom=$!; pids+=($noom)
sleep 2

run() { # name pid port
    local name=$1 pid=$2 port=$3
    local c0 t0 t1 c1 out
    c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
    out=$(turnutils_uclient -p "$port" -e 127.0.0.1 -r 49480 -W "$secret" -u bench \
        -n "$messages" -m "$clients" -l 170 -z "${RELAY_BENCH_INTERVAL:-1}" -c 127.0.0.1 2>&1)
    t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
    local sent recv lost
    sent=$(grep -Eo "tot_send_msgs=[0-9]+" <<<"$out" | tail -1 | cut -d= -f2)
    recv=$(grep -Eo "tot_recv_msgs=[0-9]+" <<<"$out" | tail -1 | cut -d= -f2)
    lost=$(grep -Eo "Total lost packets [0-9]+ \([0-9.]+%\)" <<<"$out" | tail -1)
    awk -v n="$name" -v s="$sent" -v r="$recv" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$tick" -v lost="$lost" 'BEGIN {
        wall = t1 - t0; relayed = s + r; cpu = (c1 - c0) / hz;
        printf "%-6s  %d sent, %d back, %s; wall %.2f s; relayed %.0f packets/s; server CPU %.2f s = %.2f us per relayed packet\n",
            n, s, r, lost, wall, relayed / wall, cpu, cpu * 1e6 / (relayed > 0 ? relayed : 1) }'
}
echo "load: $clients clients x $messages messages of 170 B, -z 1, channels (turnutils_uclient -c)"
# Alternate which server goes first (RELAY_BENCH_ORDER=noom-first) to rule out order effects.
if [ "${RELAY_BENCH_ORDER:-coturn-first}" = noom-first ]; then
    run noom "$noom" 3579
    run coturn "$coturn" 3578
else
    run coturn "$coturn" 3578
    run noom "$noom" 3579
fi
echo "noom: $(curl -s http://127.0.0.1:3580/metrics | grep -E '^noom_relay_unauthenticated_dropped_total')"

if [ "$flood" -gt 0 ]; then
    echo "unauthenticated Allocate flood, $flood s, one source:"
    ./target/release/noom-load turn-flood --server 127.0.0.1:3579 --pid "$noom" --duration "$flood" | sed 's/^/  noom    /'
    ./target/release/noom-load turn-flood --server 127.0.0.1:3578 --pid "$coturn" --duration "$flood" | sed 's/^/  coturn  /'
fi
