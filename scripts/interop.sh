#!/usr/bin/env bash
# Interop against Python's `websockets` (a peer nobody here wrote), in a venv this script makes:
# its client against our echo_server, and our client example against its echo server, each
# with permessage-deflate on and off.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv/interop"
PORT_OURS="${PORT_OURS:-9121}"
PORT_THEIRS="${PORT_THEIRS:-9122}"

echo "== interop: python venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r interop/python/requirements.txt
cargo build --release --locked -p socketry --example echo_server --example client
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

echo "== interop: python websockets client -> socketry echo_server"
"$BIN/echo_server" --addr "127.0.0.1:$PORT_OURS" > /dev/null 2>&1 &
pids+=($!)
wait_port "$PORT_OURS"
"$VENV/bin/python" interop/python/client_check.py "ws://127.0.0.1:$PORT_OURS/" deflate
"$VENV/bin/python" interop/python/client_check.py "ws://127.0.0.1:$PORT_OURS/" none

echo "== interop: socketry client -> python websockets echo server"
"$VENV/bin/python" interop/python/echo_server.py "$PORT_THEIRS" > /dev/null 2>&1 &
pids+=($!)
wait_port "$PORT_THEIRS"
check_client() {
  local flag="$1" expected="$2" out
  out=$(printf 'hello\nwörld\n__extensions__\n' | timeout 30 "$BIN/client" "ws://127.0.0.1:$PORT_THEIRS/" $flag --wait 300)
  if [ "$out" != "$(printf 'hello\nwörld\n%s' "$expected")" ]; then
    echo "socketry client vs python server ($flag): unexpected output:" >&2
    echo "$out" >&2
    return 1
  fi
  echo "socketry client vs python server (${flag:-no compression}): ok"
}
check_client --compression permessage-deflate
check_client "" none
