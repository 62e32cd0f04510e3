#!/usr/bin/env bash
# The chat demo in a real browser: installs Debian's chromium (apt-get) and playwright-core
# (npm ci, from interop/browser/package-lock.json; no browser download), starts the chat
# example, and runs interop/browser/chat.test.mjs against it. Screenshot: reports/browser/chat.png
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
cargo build --locked -p socketry-axum --example chat
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/chat"

pid=""
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
"$BIN" --addr "127.0.0.1:$PORT" > /dev/null 2>&1 &
pid=$!
wait_port "$PORT"
mkdir -p reports/browser
timeout 120 node interop/browser/chat.test.mjs "http://127.0.0.1:$PORT/" reports/browser/chat.png
