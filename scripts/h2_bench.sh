#!/usr/bin/env bash
# WebSockets over HTTP/2 against HTTP/1.1, one command:
#
#   scripts/h2_bench.sh           # about 6 min on 2 cores; rewrites docs/benchmarks.md's HTTP/2 section
#   scripts/h2_bench.sh --smoke   # every run once, briefly (CI); writes nothing under docs/
#
# Echo through socketry's own client (crates/socketry-bench/src/bin/h2_load.rs) over each
# transport, to two servers that take both on one port: socketry's `Listener` and
# `socketry_axum::serve` (hyper's HTTP/2). HTTP/1.1 is one TCP connection per socket; HTTP/2 is
# streams of shared connections (cleartext, prior knowledge; 128 streams per connection). The
# server runs on CPU 0, the load on CPU 1. Figures: messages per second, the server's CPU time
# per message (user + system), round-trip p50/p99, and the server's RSS growth per idle socket.
# Tunables: REPS (3), DURATION (2 s), IDLE (2000).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
REPS="${REPS:-3}"
DURATION="${DURATION:-2}"
IDLE="${IDLE:-2000}"
if [ "$SMOKE" = 1 ]; then REPS=1; DURATION=0.3; IDLE=200; fi
OUT="$ROOT/reports/h2bench"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
PORT=9500

if ! command -v taskset > /dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq util-linux > /dev/null
fi
echo "== h2 bench: build (release)"
cargo build --release --locked -p socketry-bench --bins
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"

server_pid=""
stop() { [ -z "$server_pid" ] || { kill "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; }; server_pid=""; }
trap stop EXIT
start() {
  PORT=$((PORT + 1))
  "${PIN_SERVER[@]}" "$BIN/bench_server" "$1" "127.0.0.1:$PORT" 2>> "$OUT/servers.log" &
  server_pid=$!
  wait_port "$PORT"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2> /dev/null || echo 0; }

SHAPES=("10x20B 10 20" "100x20B 100 20" "10x16KiB 10 16384" "100x16KiB 100 16384")
SERVERS=(socketry-listener socketry-axum-serve)
echo "== h2 bench: echo ($REPS repetitions x ${DURATION} s)"
for rep in $(seq "$REPS"); do
  for entry in "${SHAPES[@]}"; do
    read -r shape conns size <<< "$entry"
    for server in "${SERVERS[@]}"; do
      for transport in http1 http2; do
        flag=""; [ "$transport" = http2 ] && flag="--http2"
        start "$server"
        before=$(cpu_ticks "$server_pid")
        line=$("${PIN_LOAD[@]}" timeout 120 "$BIN/h2_load" "ws://127.0.0.1:$PORT/" $flag \
          --connections "$conns" --size "$size" --duration "$DURATION")
        after=$(cpu_ticks "$server_pid")
        stop
        echo "{\"kind\":\"echo\",\"shape\":\"$shape\",\"server\":\"$server\",\"transport\":\"$transport\",\"server_cpu_ticks\":$((after - before)),\"ticks_per_s\":$(getconf CLK_TCK),\"result\":$line}" >> "$RESULTS"
        printf '  %-20s %-6s %-10s %s\n' "$server" "$transport" "$shape" \
          "$(echo "$line" | sed 's/.*"msgs_per_s":\([0-9.]*\).*"p50_us":\([0-9]*\),"p99_us":\([0-9]*\).*/\1 msg\/s  p50 \2 us  p99 \3 us/')"
      done
    done
  done
done

echo "== h2 bench: memory per idle socket ($IDLE sockets)"
for server in "${SERVERS[@]}"; do
  for transport in http1 http2; do
    flag=""; [ "$transport" = http2 ] && flag="--http2"
    start "$server"
    before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")
    fifo="$OUT/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
    "$BIN/h2_load" "ws://127.0.0.1:$PORT/" $flag --idle "$IDLE" --hold 60 > "$fifo" &
    load_pid=$!
    read -r _ready < "$fifo"
    sleep 1
    after=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")
    kill "$load_pid" 2> /dev/null || true
    wait "$load_pid" 2> /dev/null || true
    rm -f "$fifo"
    stop
    per=$(python3 -c "print(round(($after - $before) / $IDLE, 2))")
    echo "{\"kind\":\"idle\",\"server\":\"$server\",\"transport\":\"$transport\",\"sockets\":$IDLE,\"kib_per_socket\":$per}" >> "$RESULTS"
    printf '  %-20s %-6s %s KiB/socket\n' "$server" "$transport" "$per"
  done
done

if [ "$SMOKE" = 1 ]; then
  python3 scripts/h2_report.py "$RESULTS" --check
  echo "== h2 bench: smoke run ok"
else
  python3 scripts/h2_report.py "$RESULTS" --write docs/benchmarks.md
fi
