#!/usr/bin/env bash
# The chat demo in a real browser: installs Debian's chromium (apt-get) and playwright-core
# (npm ci, from interop/browser/package-lock.json; no browser download), starts the chat
# example, and runs interop/browser/chat.test.mjs against it; then two chat nodes on one
# redis-server of its own (interop/browser/cluster.test.mjs starts and restarts them); then
# the chat over https:// with HTTP/2 (a self-signed certificate made here with openssl;
# interop/browser/http2.test.mjs).
# Screenshots: reports/browser/chat.png, reports/browser/cluster.png, reports/browser/http2.png
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
if ! command -v openssl > /dev/null; then
  echo "== browser: apt-get install openssl"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl > /dev/null
fi
echo "== browser: npm ci (playwright-core)"
(cd interop/browser && npm ci --no-audit --no-fund --silent)
scripts/brokers.sh
cargo build --locked -p socketry-axum --features redis,tls --example chat
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/chat"

pid=""
redis_pid=""
TLS_DIR="$(mktemp -d)"
cleanup() {
  rm -rf "$TLS_DIR"
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

# HTTP/2 over TLS: a certificate for localhost, trusted by the browser through its key's hash.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 2 \
  -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2> /dev/null
SPKI="$(openssl x509 -pubkey -noout -in "$TLS_DIR/cert.pem" | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64)"
TLS_PORT="${PORT_CHAT_TLS:-9136}"
"$BIN" --addr "127.0.0.1:$TLS_PORT" --tls "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" --log-requests \
  > "$TLS_DIR/server.log" 2>&1 &
pid=$!
wait_port "$TLS_PORT"
timeout 120 node interop/browser/http2.test.mjs "https://localhost:$TLS_PORT/" "$TLS_DIR/server.log" \
  "$SPKI" reports/browser/http2.png
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""
