#!/usr/bin/env bash
# The fan-out benchmark: socketry-hub against Bun 1.4's built-in pub/sub (uWebSockets'
# TopicTree), Socket.IO 4.8 (websocket transport only) and Node ws 8 (clients.forEach(send)),
# same machine, same shapes, same run. One command:
#
#   scripts/fanout_bench.sh           # every shape, REPS repetitions, medians; rewrites the
#                                     # fan-out section of docs/benchmarks.md (about 10 min)
#   scripts/fanout_bench.sh --smoke   # every server and shape once, small and brief (CI);
#                                     # writes nothing under docs/
#
# Each server runs alone, pinned to CPU 0 (one thread: Bun's and Node's event loops, a
# current-thread tokio runtime for socketry-hub); the load generator (`fanout_load`, one
# thread) is pinned to CPU 1. Servers are interleaved within each shape. Shapes: one
# publisher to N subscribers (N = 1,000 and 5,000; 64 B and 1 KiB; 16 publishes in flight),
# and all-to-all rounds (uWebSockets' broadcast_test: N = 100 and 200, each client sends one
# message and waits for the N of its round). The hub's idle overhead: RSS of 10,000 idle
# connections in one room (hub_server) against 10,000 idle plain socketry connections.
# Tunables: REPS (3), DURATION (3 s), IDLE (10000).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
REPS="${REPS:-3}"
DURATION="${DURATION:-3}"
IDLE="${IDLE:-10000}"
SHAPES=("fanout 1000 64" "fanout 1000 1024" "fanout 5000 64" "fanout 5000 1024" "all 100 64" "all 200 64")
if [ "$SMOKE" = 1 ]; then
  REPS=1; DURATION=0.3; IDLE=200
  SHAPES=("fanout 50 64" "all 20 64")
fi
OUT="$ROOT/reports/fanout"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
: > "$OUT/servers.log"
PORT=9500
PEERS="$ROOT/crates/socketry-bench/fanout"

if ! command -v taskset > /dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq util-linux > /dev/null
fi
echo "== fanout: build (release)"
cargo build --release --locked -p socketry-bench --bin hub_server --bin fanout_load --bin bench_server --bin bench_load
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
echo "== fanout: npm ci (Bun's binary, Socket.IO, ws)"
(cd "$PEERS" && npm ci --no-audit --no-fund --silent)
BUN="$PEERS/node_modules/@oven/bun-linux-x64/bin/bun"

ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"
trap stop_server EXIT
# start_server NAME: socketry-hub | bun | socketio | node-ws | socketry (plain, for idle memory)
start_server() {
  PORT=$((PORT + 1))
  case "$1" in
    socketry-hub) "${PIN_SERVER[@]}" "$BIN/hub_server" "127.0.0.1:$PORT" 2>> "$OUT/servers.log" & ;;
    socketry) "${PIN_SERVER[@]}" "$BIN/bench_server" socketry "127.0.0.1:$PORT" 2>> "$OUT/servers.log" & ;;
    bun) "${PIN_SERVER[@]}" "$BUN" "$PEERS/bun_server.js" "$PORT" >> "$OUT/servers.log" 2>&1 & ;;
    socketio) "${PIN_SERVER[@]}" node "$PEERS/socketio_server.mjs" "$PORT" >> "$OUT/servers.log" 2>&1 & ;;
    node-ws) "${PIN_SERVER[@]}" node "$PEERS/ws_server.mjs" "$PORT" >> "$OUT/servers.log" 2>&1 & ;;
  esac
  server_pid=$!
  wait_port "$PORT"
}

SERVERS=(socketry-hub bun socketio node-ws)
echo "== fanout: $REPS x ${#SHAPES[@]} shapes x ${#SERVERS[@]} servers, ${DURATION}s each"
for rep in $(seq "$REPS"); do
  for shape in "${SHAPES[@]}"; do
    read -r kind clients size <<< "$shape"
    for server in "${SERVERS[@]}"; do
      proto=plain; [ "$server" = socketio ] && proto=socketio
      start_server "$server"
      line=$("${PIN_LOAD[@]}" "$BIN/fanout_load" "127.0.0.1:$PORT" --proto "$proto" --shape "$kind" \
        --clients "$clients" --size "$size" --window 16 --duration "$DURATION" \
        --server-pid "$server_pid" --label "$server")
      stop_server
      echo "$line" >> "$RESULTS"
      echo "  rep $rep: $line"
    done
  done
done

echo "== fanout: idle memory ($IDLE idle connections; the hub's in one room)"
for server in socketry socketry-hub; do
  start_server "$server"
  per=$(idle_kib_per_connection "$BIN" "$server_pid" "ws://127.0.0.1:$PORT/sub" "$IDLE" "$OUT")
  stop_server
  echo "{\"kind\":\"idle\",\"server\":\"$server\",\"connections\":$IDLE,\"kib_per_connection\":$per}" >> "$RESULTS"
  printf '  %-14s %s KiB/connection\n' "$server" "$per"
done

if [ "$SMOKE" = 1 ]; then
  python3 scripts/fanout_report.py "$RESULTS" --check
  echo "== fanout: smoke run ok"
else
  python3 scripts/fanout_report.py "$RESULTS" --write docs/benchmarks.md
fi
