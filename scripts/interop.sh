#!/usr/bin/env bash
# The interop matrix against peers nobody here wrote, each installed into the repo:
# Python `websockets` (venv .venv/interop, interop/python/requirements.txt) and Node `ws`
# (interop/node/node_modules, from its package-lock.json). For each peer and with
# permessage-deflate on and off:
#   - its client against socketry's echo_server (interop/*/client_check.*),
#   - socketry's client (the interop_client example) against its echo server.
# Every check covers text and binary up to 16 MiB, fragments, ping/pong and close codes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
VENV="$ROOT/.venv/interop"
PORT_OURS="${PORT_OURS:-9121}"
PORT_PYTHON="${PORT_PYTHON:-9122}"
PORT_NODE="${PORT_NODE:-9123}"

echo "== interop: python venv, npm ci"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r interop/python/requirements.txt
(cd interop/node && npm ci --no-audit --no-fund --silent)
cargo build --release --locked -p socketry --example echo_server --example interop_client
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"

pids=()
cleanup() { [ "${#pids[@]}" -eq 0 ] || kill "${pids[@]}" 2> /dev/null || true; }
trap cleanup EXIT

"$BIN/echo_server" --addr "127.0.0.1:$PORT_OURS" > /dev/null 2>&1 &
pids+=($!)
"$VENV/bin/python" interop/python/echo_server.py "$PORT_PYTHON" > /dev/null 2>&1 &
pids+=($!)
node interop/node/echo_server.mjs "$PORT_NODE" --deflate 2> /dev/null &
pids+=($!)
wait_port "$PORT_OURS"
wait_port "$PORT_PYTHON"
wait_port "$PORT_NODE"

for mode in deflate none; do
  echo "== interop: permessage-deflate $mode"
  timeout 120 "$VENV/bin/python" interop/python/client_check.py "ws://127.0.0.1:$PORT_OURS/" "$mode"
  timeout 120 node interop/node/client_check.mjs "ws://127.0.0.1:$PORT_OURS/" "$mode"
  timeout 120 "$BIN/interop_client" "ws://127.0.0.1:$PORT_PYTHON/" "$mode"
  timeout 120 "$BIN/interop_client" "ws://127.0.0.1:$PORT_NODE/" "$mode"
done
echo "== interop: all peers ok"
