#!/usr/bin/env bash
# The cross-node benchmark: two nodes on this machine sharing one broker, 5,000 subscribers on
# each, one publisher on node A (fanout_load --remote). Servers: socketry-hub on one Redis
# (RedisBroker), on one nats-server (NatsBroker), Socket.IO 4.8 with @socket.io/redis-adapter
# 8.3 on the same Redis; and, for the "broker costs at most a fifth" target, the single-node
# hub (and Socket.IO) with all 10,000 subscribers on one process, alone and with one process
# spinning beside it (what sharing the two cores costs, without a broker). Sizes 64 B and 1 KiB; 16
# publishes in flight. Redis's own counters (INFO commandstats, PUBSUB NUMSUB) give the broker
# messages per publish. One command:
#
#   scripts/cluster_bench.sh            # REPS repetitions, medians; rewrites the cross-node
#                                       # section of docs/benchmarks.md (about 10 min)
#   scripts/cluster_bench.sh --smoke    # every server once, small and brief; writes nothing
#
# The servers are not pinned: four processes (two nodes, the broker, the load) share the two
# cores, as they would on one small host. Tunables: REPS (3), DURATION (4 s), CLIENTS (5000),
# WINDOW (16 publishes in flight).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
REPS="${REPS:-3}"
DURATION="${DURATION:-4}"
CLIENTS="${CLIENTS:-5000}"
WINDOW="${WINDOW:-16}"
SIZES=(64 1024)
if [ "$SMOKE" = 1 ]; then REPS=1; DURATION=0.5; CLIENTS=50; SIZES=(64); fi
OUT="$ROOT/reports/cluster"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
: > "$OUT/servers.log"
PEERS="$ROOT/crates/socketry-bench/fanout"
PORT=9600

scripts/brokers.sh
echo "== cluster: build (release)"
cargo build --release --locked -p socketry-bench --features redis,nats --bin hub_server --bin fanout_load
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
echo "== cluster: npm ci (Socket.IO, its Redis adapter)"
(cd "$PEERS" && npm ci --no-audit --no-fund --silent)
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
  pids=()
}
broker_pids=()
stop_brokers() {
  for pid in "${broker_pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${broker_pids[@]}"; do wait "$pid" 2> /dev/null || true; done
}
trap 'stop_all; stop_brokers' EXIT

REDIS_PORT=$((PORT + 90)); NATS_PORT=$((PORT + 91))
REDIS_DIR="$(mktemp -d)"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --protected-mode no \
  --dir "$REDIS_DIR" --loglevel warning >> "$OUT/servers.log" 2>&1 &
broker_pids+=($!)
nats-server -a 127.0.0.1 -p "$NATS_PORT" >> "$OUT/servers.log" 2>&1 &
broker_pids+=($!)
wait_port "$REDIS_PORT"; wait_port "$NATS_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"; NATS_URL="nats://127.0.0.1:$NATS_PORT"
redis() { redis-cli -p "$REDIS_PORT" "$@"; }

# start NAME ARGS...: one server on the next port; its port in $port, its PID in $pid.
start() {
  local name="$1"; shift
  PORT=$((PORT + 1)); port=$PORT
  case "$name" in
    hub) "$BIN/hub_server" "127.0.0.1:$port" "$@" 2>> "$OUT/servers.log" & ;;
    socketio) node "$PEERS/socketio_server.mjs" "$port" "$@" >> "$OUT/servers.log" 2>&1 & ;;
  esac
  pid=$!
  pids+=("$pid")
  wait_port "$port"
}

# run LABEL PROTO SIZE SERVER [BROKER_ARGS...]: one measurement, a line in $RESULTS.
run() {
  local label="$1" proto="$2" size="$3" server="$4"; shift 4
  local remote_args=() clients="$CLIENTS"
  start "$server" "$@"; local port_a=$port pid_a=$pid
  if [ $# -gt 0 ]; then
    start "$server" "$@"
    remote_args=(--remote "127.0.0.1:$port" --remote-pid "$pid")
    # Give both nodes a moment to reach the broker.
    sleep 0.5
  else
    clients=$((CLIENTS * 2)) # the same subscribers, on one node
  fi
  redis CONFIG RESETSTAT > /dev/null
  local line numsub=0 n spin=""
  # The single node with a process spinning beside it: the cores shared as in the two-node
  # runs, without a broker.
  if [ "$label" = hub-1node-busy ]; then
    sh -c 'while :; do :; done' &
    spin=$!
  fi
  "$BIN/fanout_load" "127.0.0.1:$port_a" --proto "$proto" --shape fanout --clients "$clients" \
    --size "$size" --window "$WINDOW" --duration "$DURATION" --server-pid "$pid_a" --label "$label" \
    "${remote_args[@]}" > "$OUT/line" &
  local load=$!
  # Redis's subscriptions to the room's channel while the load runs (the nodes unsubscribe
  # once their members are gone): the most seen.
  while kill -0 "$load" 2> /dev/null; do
    # Our channel's subscribers, plus pattern subscriptions (the Socket.IO adapter
    # PSUBSCRIBEs `socket.io#/#*` once per node).
    n=$(( $(redis PUBSUB NUMSUB bench:room:bench | awk 'NR == 2 { print $1 + 0 }') + $(redis PUBSUB NUMPAT) ))
    [ "$n" -gt "$numsub" ] && numsub=$n
    sleep 0.2
  done
  wait "$load"
  if [ -n "$spin" ]; then kill "$spin"; wait "$spin" 2> /dev/null || true; fi
  line=$(cat "$OUT/line")
  local publishes
  publishes=$(redis INFO commandstats | awk -F'[:=,]' '/^cmdstat_(publish|eval):/ { n += $3 } END { print n + 0 }')
  stop_all
  line="${line%\}},\"redis_publish_calls\":$publishes,\"redis_subscribers\":$numsub}"
  echo "$line" >> "$RESULTS"
  echo "  $line"
}

echo "== cluster: $REPS x ${#SIZES[@]} sizes, $CLIENTS subscribers per node, ${DURATION}s each"
for rep in $(seq "$REPS"); do
  for size in "${SIZES[@]}"; do
    run hub-1node plain "$size" hub
    run hub-1node-busy plain "$size" hub
    run hub-redis plain "$size" hub --redis "$REDIS_URL"
    run hub-nats plain "$size" hub --nats "$NATS_URL"
    run socketio-1node socketio "$size" socketio
    run socketio-redis socketio "$size" socketio "$REDIS_URL"
  done
done
stop_brokers
rm -rf "$REDIS_DIR"
if [ "$SMOKE" = 1 ]; then
  python3 scripts/cluster_report.py "$RESULTS" --check
  echo "== cluster: smoke run ok"
else
  python3 scripts/cluster_report.py "$RESULTS" --write docs/benchmarks.md
fi
