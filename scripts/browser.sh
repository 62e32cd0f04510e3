#!/usr/bin/env bash
# The chat demo in a real browser: installs Debian's chromium (apt-get) and playwright-core
# (npm ci, from interop/browser/package-lock.json; no browser download), starts the chat
# example, and runs interop/browser/chat.test.mjs against it; then two chat nodes on one
# redis-server of its own (interop/browser/cluster.test.mjs starts and restarts them).
# Screenshots: reports/browser/chat.png, reports/browser/cluster.png
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
PORT="${PORT_CHAT:-9131}"

if ! [ -x /usr/bin/chromium ]; then
  echo "== browser: apt-get install chromium"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
fi
echo "== browser: npm ci (playwright-core)"
(cd interop/browser && npm ci --no-audit --no-fund --silent)
scripts/brokers.sh
cargo build --locked -p socketry-axum --features redis --example chat
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/chat"

pid=""
redis_pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT
"$BIN" --addr "127.0.0.1:$PORT" > /dev/null 2>&1 &
pid=$!
wait_port "$PORT"
mkdir -p reports/browser
timeout 120 node interop/browser/chat.test.mjs "http://127.0.0.1:$PORT/" reports/browser/chat.png
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""

# Two nodes, one Redis (its own: a free port, no persistence, stopped by PID at exit).
REDIS_PORT="${PORT_REDIS:-9133}"
REDIS_DIR="$(mktemp -d)"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --protected-mode no --dir "$REDIS_DIR" --loglevel warning > /dev/null 2>&1 &
redis_pid=$!
wait_port "$REDIS_PORT"
timeout 180 node interop/browser/cluster.test.mjs "$BIN" "redis://127.0.0.1:$REDIS_PORT" \
  "${PORT_CHAT_A:-9134}" "${PORT_CHAT_B:-9135}" reports/browser/cluster.png
kill "$redis_pid" 2>/dev/null || true
wait "$redis_pid" 2>/dev/null || true
redis_pid=""
rm -rf "$REDIS_DIR"
