#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against socketry in both roles and checks the results against
# conformance/expected-results.json.
#   scripts/conformance.sh            check (CI)
#   scripts/conformance.sh --update   rewrite the baseline from this run
# Environment: CASES (default '*'), EXCLUDE (default '12.* 13.*': compression comes later),
# SERVER_PORT / CLIENT_PORT (default 9101 / 9102).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
AUTOBAHN="$ROOT/../shared/conformance/autobahn"
export AUTOBAHN_VENV="$ROOT/.autobahn-venv"
export EXCLUDE="${EXCLUDE-12.* 13.*}"
SERVER_PORT="${SERVER_PORT:-9101}"
CLIENT_PORT="${CLIENT_PORT:-9102}"
UPDATE="${1:-}"

echo "== conformance: setup"
"$AUTOBAHN/setup.sh" > /dev/null
cargo build --release --locked -p socketry --example echo_server --example autobahn_client
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
LOGS="$ROOT/reports"
mkdir -p "$LOGS"

status=0

echo "== conformance: socketry as server (fuzzingclient)"
"$BIN/echo_server" --addr "127.0.0.1:$SERVER_PORT" > "$LOGS/echo_server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null && break
  sleep 0.1
done
AGENT=socketry OUT="$ROOT/reports/servers" \
  "$AUTOBAHN/run-fuzzingclient.sh" "ws://127.0.0.1:$SERVER_PORT" "${CASES:-*}" || status=1
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
python3 conformance/compare.py server reports/servers $UPDATE || status=1

echo "== conformance: socketry as client (fuzzingserver)"
CASES="${CASES:-*}" OUT="$ROOT/reports/clients" \
  "$AUTOBAHN/run-fuzzingserver.sh" "$CLIENT_PORT" \
  "$BIN/autobahn_client" --url "ws://127.0.0.1:$CLIENT_PORT" > "$LOGS/autobahn_client.log" 2>&1 || status=1
tail -n 3 "$LOGS/autobahn_client.log"
python3 conformance/compare.py client reports/clients $UPDATE || status=1

exit $status
