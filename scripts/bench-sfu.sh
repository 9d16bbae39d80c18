#!/usr/bin/env bash
# The media-server benchmark (issue 12): the same synthetic participants
# (`noom-load sfu`) through Noom's SFU and through Janus 1.1's videoroom, side
# by side, for each room size given.
#
#   scripts/bench-sfu.sh [SIZES] [DURATION] [WARMUP] [LAYER]
#   scripts/bench-sfu.sh "10 15 20 25" 20 5 h
#
# Needs root (for a network namespace) and the `janus` package. Everything
# runs in a network namespace of its own with no route out: Noom and the
# clients talk over 127.0.0.1; Janus gathers no loopback ICE candidates, so
# it gets a veth interface of the namespace (10.203.0.1, enforced with
# `ice_enforce_list`), which carries nothing beyond this namespace: no
# packet can reach another address. Server CPU comes from /proc/<pid>/stat.
# Results: one JSON line per run in $OUT (default target/bench-sfu/), and a
# table at the end.
set -euo pipefail

SIZES=${1:-"10 15 20 25"}
DURATION=${2:-20}
WARMUP=${3:-5}
LAYER=${4:-h}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_DIR/bench-sfu}
NOOM=$TARGET_DIR/release/noom
LOAD=$TARGET_DIR/release/noom-load
JANUS_IP=10.203.0.1
JANUS_PORT=8188
NOOM_HTTP=127.0.0.1:3100

if [ -z "${SFU_BENCH_IN_NS:-}" ]; then
    command -v janus >/dev/null || { echo "janus is not installed (apt-get install janus)" >&2; exit 2; }
    (cd "$ROOT" && nice -n 19 cargo build --release --bin noom --bin noom-load)
    mkdir -p "$OUT"
    export SFU_BENCH_IN_NS=1 CARGO_TARGET_DIR=$TARGET_DIR OUT
    exec unshare -n "$0" "$SIZES" "$DURATION" "$WARMUP" "$LAYER"
fi

# Inside the namespace: loopback, and a veth pair for Janus's candidates.
ip link set lo up
ip link add sfu0 type veth peer name sfu1
ip addr add "$JANUS_IP/24" dev sfu0
ip link set sfu0 up
ip link set sfu1 up

WORK=$(mktemp -d /tmp/bench-sfu.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# write_janus_config DIR HTTP_PORT: a Janus 1.1 configuration that loads only
# the HTTP transport (127.0.0.1) and the videoroom plugin, gathers ICE
# candidates on the namespace's veth sfu0 only, uses no STUN/TURN, and logs
# to DIR/janus.log.
write_janus_config() {
    local dir=$1 port=$2 lib=/usr/lib/x86_64-linux-gnu/janus
    mkdir -p "$dir/conf" "$dir/plugins" "$dir/transports" "$dir/none"
    ln -sf "$lib/plugins/libjanus_videoroom.so" "$dir/plugins/"
    ln -sf "$lib/transports/libjanus_http.so" "$dir/transports/"
    cat > "$dir/conf/janus.jcfg" <<JCFG
general: {
    configs_folder = "$dir/conf"
    plugins_folder = "$dir/plugins"
    transports_folder = "$dir/transports"
    events_folder = "$dir/none"
    loggers_folder = "$dir/none"
    log_to_stdout = false
    log_to_file = "$dir/janus.log"
    debug_level = 3
    session_timeout = 120
    hide_dependencies = true
}
certificates: {
}
media: {
    rtp_port_range = "40000-45000"
}
nat: {
    nice_debug = false
    ice_enforce_list = "sfu0"
    ignore_mdns = true
}
plugins: {
}
transports: {
}
events: {
    broadcast = false
}
JCFG
    cat > "$dir/conf/janus.transport.http.jcfg" <<JCFG
general: {
    json = "plain"
    base_path = "/janus"
    http = true
    port = $port
    interface = "lo"
    ip = "127.0.0.1"
    https = false
}
admin: {
    admin_http = false
    admin_https = false
}
JCFG
    cat > "$dir/conf/janus.plugin.videoroom.jcfg" <<JCFG
general: {
}
JCFG
}

# Noom: release build, own data directory, per-address limits lifted (every
# client comes from 127.0.0.1), every call through the media server, and
# every participant's audio forwarded as Janus does (the synthetic Opus has
# no audio level: with the default sfu.audio_streams = 3, all but three
# publishers' audio would be held, and counted as lost by the tool).
mkdir -p "$WORK/noom"
NOOM_SFU_LISTEN=127.0.0.1:3479 NOOM_SFU_PUBLIC_IP=127.0.0.1 \
NOOM_SERVER_CONNECTIONS_PER_IP=100000 NOOM_SFU_SESSIONS_PER_IP=100000 \
NOOM_SFU_JOINS_PER_IP_PER_MIN=100000 NOOM_SFU_MAX_PARTICIPANTS=100000 \
NOOM_LIMITS_CALL_MAX=50 NOOM_CALL_MODE=sfu NOOM_SFU_AUDIO_STREAMS=50 RUST_LOG=warn \
    nice -n 19 "$NOOM" --http "$NOOM_HTTP" --data-dir "$WORK/noom/data" >"$WORK/noom/log" 2>&1 &
NOOM_PID=$!
PIDS+=("$NOOM_PID")

write_janus_config "$WORK/janus" "$JANUS_PORT"
nice -n 19 janus -C "$WORK/janus/conf/janus.jcfg" -F "$WORK/janus/conf" >"$WORK/janus/stdout" 2>&1 &
JANUS_PID=$!
PIDS+=("$JANUS_PID")

for _ in $(seq 50); do
    curl -sf "http://$NOOM_HTTP/healthz" >/dev/null 2>&1 &&
        curl -sf -X POST -d '{"janus":"info","transaction":"x"}' "http://127.0.0.1:$JANUS_PORT/janus" >/dev/null 2>&1 &&
        break
    sleep 0.2
done

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS="$OUT/$STAMP.jsonl"
for n in $SIZES; do
    for target in noom janus; do
        if [ "$target" = noom ]; then
            args=(--target noom --url "http://$NOOM_HTTP" --pid "$NOOM_PID")
        else
            args=(--target janus --janus-url "http://127.0.0.1:$JANUS_PORT" --janus-bind "$JANUS_IP" --pid "$JANUS_PID")
        fi
        echo "== $target, $n participants" >&2
        nice -n 19 "$LOAD" sfu "${args[@]}" --participants "$n" --layer "$LAYER" \
            --duration "$DURATION" --warmup "$WARMUP" --json >>"$RESULTS" || true
        sleep 3
    done
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
head = f"{'server':6} {'room':>4} {'packets/s':>10} {'Mbit/s':>7} {'us/packet':>9} {'server':>7} {'gen.':>6} {'loss %':>7} {'worst %':>7} {'jitter ms':>9} {'p99 ms':>7} {'layer ok':>8} {'held':>5}"
print(head)
for r in rows:
    per = r.get("server_cpu_us_per_packet")
    cores = r.get("server_cores")
    print(f"{r['target']:6} {r['participants']:>4} {r['packets_per_s']:>10.0f} {r['bits_per_s']/1e6:>7.1f} "
          f"{(per if per is not None else float('nan')):>9.2f} {(cores or 0)*100:>6.0f}% {r['generator_cores']*100:>5.0f}% "
          f"{r['loss_pct']:>7.3f} {r['worst_subscriber_loss_pct']:>7.3f} {r['jitter_ms_mean']:>9.2f} "
          f"{r['latency']['p99_ms']:>7.1f} {r['subscribers_at_layer']:>4}/{len(r['subscribers']):<3} {'yes' if r['held'] else 'NO':>5}")
for t in ("noom", "janus"):
    held = [r["participants"] for r in rows if r["target"] == t and r["held"]]
    print(f"largest room held by {t}: {max(held) if held else 'none'}")
PY
echo "raw results: $RESULTS" >&2
