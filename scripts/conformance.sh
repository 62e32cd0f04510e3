#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against socketry in both roles, at the same time (the suite is
# single-threaded Python; two roles use two cores), and checks the results against
# conformance/expected-results.json.
#   scripts/conformance.sh            check (CI)
#   scripts/conformance.sh --update   rewrite the baseline from this run
# Environment: CASES (default '*': 1.* to 13.*, compression included), EXCLUDE (default none),
# SERVER_PORT / CLIENT_PORT (default 9101 / 9102).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
AUTOBAHN="$ROOT/../shared/conformance/autobahn"
export AUTOBAHN_VENV="$ROOT/.autobahn-venv"
export EXCLUDE="${EXCLUDE-}"
export CASES="${CASES:-*}"
SERVER_PORT="${SERVER_PORT:-9101}"
CLIENT_PORT="${CLIENT_PORT:-9102}"
UPDATE="${1:-}"
LOGS="$ROOT/reports"
mkdir -p "$LOGS"

echo "== conformance: setup"
"$AUTOBAHN/setup.sh" > /dev/null
cargo build --release --locked -p socketry --example echo_server --example autobahn_client
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

start=$(date +%s)
echo "== conformance: socketry as server (fuzzingclient) and as client (fuzzingserver), in parallel"
"$BIN/echo_server" --addr "127.0.0.1:$SERVER_PORT" > "$LOGS/echo_server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null && break
  sleep 0.1
done
(AGENT=socketry OUT="$LOGS/servers" "$AUTOBAHN/run-fuzzingclient.sh" "ws://127.0.0.1:$SERVER_PORT" "$CASES" \
  > "$LOGS/fuzzingclient.log" 2>&1) &
server_run=$!
pids+=($server_run)
(OUT="$LOGS/clients" "$AUTOBAHN/run-fuzzingserver.sh" "$CLIENT_PORT" \
  "$BIN/autobahn_client" --url "ws://127.0.0.1:$CLIENT_PORT" > "$LOGS/fuzzingserver.log" 2>&1) &
client_run=$!
pids+=($client_run)

status=0
wait "$server_run" || status=1
wait "$client_run" || status=1
echo "== conformance: both roles took $(( $(date +%s) - start ))s"
echo "-- socketry as server:"; grep -E "^(autobahn|  )" "$LOGS/fuzzingclient.log" || true
echo "-- socketry as client:"; grep -E "^(autobahn|  )" "$LOGS/fuzzingserver.log" || true
python3 conformance/compare.py server "$LOGS/servers" $UPDATE || status=1
python3 conformance/compare.py client "$LOGS/clients" $UPDATE || status=1
exit $status
