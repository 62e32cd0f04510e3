#!/usr/bin/env bash
# Soak (not a CI test): CONNECTIONS (10000) concurrent connections echoing sequence-numbered
# messages for DURATION (60) seconds against the echo_server example; fails on any error,
# lost or reordered message. Samples the server's RSS every 5 s into reports/soak/rss.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
CONNECTIONS="${CONNECTIONS:-10000}"
DURATION="${DURATION:-60}"
PORT="${PORT:-9141}"
OUT="$ROOT/reports/soak"
mkdir -p "$OUT"
cargo build --release --locked -p socketry --example echo_server
cargo build --release --locked -p socketry-bench --bin bench_soak
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"

"$TARGET/examples/echo_server" --addr "127.0.0.1:$PORT" --no-compression > /dev/null 2>&1 &
server=$!
sampler=""
trap 'kill $server $sampler 2> /dev/null || true' EXIT
wait_port "$PORT"
: > "$OUT/rss.txt"
( while kill -0 "$server" 2> /dev/null; do
    echo "$(date +%s) $(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status")" >> "$OUT/rss.txt"
    sleep 5
  done ) &
sampler=$!
"$TARGET/bench_soak" "ws://127.0.0.1:$PORT/" --connections "$CONNECTIONS" --duration "$DURATION" | tee "$OUT/soak.log"
echo "server RSS (KiB) every 5 s:"
awk '{ printf "%s ", $2 } END { print "" }' "$OUT/rss.txt"
