#!/usr/bin/env bash
# coturn's own test clients against Noom's relay: an outside implementation
# checks STUN, TURN over UDP and TCP, channels and Send indications, REST
# credentials, and that wrong credentials are refused. Loopback only.
# Usage: tests/turnutils/run.sh [path/to/noom]   (needs the coturn package)
set -euo pipefail
noom="${1:-target/debug/noom}"
for tool in turnutils_uclient turnutils_peer turnutils_stunclient; do
    command -v "$tool" >/dev/null || { echo "turnutils: $tool missing (apt-get install coturn)" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The relay listens on UDP and TCP on the same port: one free for both.
free_udp_tcp_port() { python3 -c '
import socket
while True:
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
        print(p)
        break
    except OSError:
        pass'; }
# The peer is on loopback, one of this host's own addresses, which the relay
# reaches only on its relay ports (49152-65535): the peer takes one of them.
relay_range_udp_port() { python3 -c '
import random, socket
for _ in range(1000):
    p = random.randint(49152, 65535)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'; }

secret="turnutils-shared-secret-$RANDOM$RANDOM"
peer=$(relay_range_udp_port)
data=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$data"; }
trap cleanup EXIT

# A port found free may be taken by the time noom binds it: /healthz is 503
# while the relay is not running, and then noom starts again on new ports.
healthy=false
for attempt in 1 2 3; do
    http=$(free_port); turn=$(free_udp_tcp_port)
    NOOM_SFU_LISTEN=127.0.0.1:0 NOOM_TURN_LISTEN="127.0.0.1:$turn" NOOM_TURN_SECRET="$secret" NOOM_TURN_ALLOW_PEERS=127.0.0.0/8 \
    NOOM_TURN_MAX_ALLOCATIONS_PER_USER=100 RUST_LOG=warn \
        "$noom" --http "127.0.0.1:$http" --data-dir "$data" >"$data/noom.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && { healthy=true; break; }
        sleep 0.1
    done
    if $healthy; then
        pids+=("$server")
        break
    fi
    echo "turnutils: noom not healthy (attempt $attempt):" >&2
    cat "$data/noom.log" >&2
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
done
$healthy || { echo "turnutils: noom's relay did not start" >&2; exit 1; }
turnutils_peer -L 127.0.0.1 -p "$peer" >/dev/null 2>&1 &
pids+=($!)

passed=0; failed=0
check() { # name, then the command; passes when it prints 0% loss and every message came back
    local name=$1; shift
    local out
    out=$(timeout 60 "$@" 2>&1 || true)
    if grep -q "Total lost packets 0 (0.000000%)" <<<"$out" && grep -Eq "tot_send_msgs=([0-9]+), tot_recv_msgs=\1$" <<<"$out"; then
        echo "ok - $name"; passed=$((passed + 1))
    else
        echo "not ok - $name"; echo "$out" | tail -5 | sed 's/^/    /'; failed=$((failed + 1))
    fi
}
client=(turnutils_uclient -p "$turn" -e 127.0.0.1 -r "$peer" -W "$secret" -u turnutils -n 100 -m 5 -l 170 -z 5 -c)

if timeout 10 turnutils_stunclient -p "$turn" 127.0.0.1 2>&1 | grep -q "UDP reflexive addr: 127.0.0.1"; then
    echo "ok - STUN binding (turnutils_stunclient)"; passed=$((passed + 1))
else
    echo "not ok - STUN binding (turnutils_stunclient)"; failed=$((failed + 1))
fi
check "TURN/UDP, channels" "${client[@]}" 127.0.0.1
check "TURN/UDP, Send/Data indications" "${client[@]}" -s 127.0.0.1
check "TURN/TCP, channels" "${client[@]}" -t 127.0.0.1
check "TURN/TCP, Send/Data indications" "${client[@]}" -t -s 127.0.0.1
out=$(timeout 30 turnutils_uclient -p "$turn" -e 127.0.0.1 -r "$peer" -W "not-the-secret" -u turnutils -n 5 -m 1 -c 127.0.0.1 2>&1 || true)
if grep -q "Cannot complete Allocation" <<<"$out"; then
    echo "ok - wrong REST secret refused"; passed=$((passed + 1))
else
    echo "not ok - wrong REST secret refused"; echo "$out" | tail -3; failed=$((failed + 1))
fi
echo "turnutils: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
