#!/usr/bin/env bash
# The benchmark of socketry against its peers, one command:
#
#   scripts/bench.sh            # everything (about 20 min on 2 cores), writes docs/benchmarks.md's
#                               # peer section and docs/bench-throughput.svg
#   scripts/bench.sh --smoke    # every server once, briefly (CI); writes nothing under docs/
#   PARTS="mt many" scripts/bench.sh   # some sections only (see PARTS below); prints the report
#
# Throughput: every server (same tokio setup: one current-thread runtime pinned to CPU 0)
# against the same load generator (pinned to CPU 1), every shape, servers interleaved
# (A B C ... A B C ...), REPS repetitions, medians. Own work: user-space instructions per echoed
# message in the server process under callgrind (difference of two runs, so start-up and
# handshakes cancel). Syscalls per message in the pipelined shape under strace -c (same
# difference). Idle memory: server RSS growth over 10,000 idle connections.
# Tunables: REPS (5), DURATION (2 s), DURATION_MANY (10 s, the many-connection runs: with
# 50,000 connections one round trip is most of a second), IDLE (10000), MANY_COUNTS
# ("10000 50000"), PER_PROCESS (below).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
REPS="${REPS:-5}"
DURATION="${DURATION:-2}"
DURATION_MANY="${DURATION_MANY:-10}"
IDLE="${IDLE:-10000}"
if [ "$SMOKE" = 1 ]; then REPS=1; DURATION=0.3; DURATION_MANY=0.5; IDLE=200; fi
# PARTS: the sections to run, of micro throughput mt many instructions compression syscalls
# idle (default: all). A partial run prints its report and writes nothing under docs/.
PARTS="${PARTS:-all}"
part() { [ "$PARTS" = all ] || [[ " $PARTS " == *" $1 "* ]]; }
OUT="$ROOT/reports/bench"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
: > "$OUT/servers.log"
PORT=9300

need() { command -v "$1" > /dev/null 2>&1; }
install_tools() {
  local missing=()
  need valgrind || missing+=(valgrind)
  need strace || missing+=(strace)
  need taskset || missing+=(util-linux)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "== bench: apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
  fi
}
install_tools
echo "== bench: build (release)"
cargo build --release --locked -p socketry-bench --bins
cargo build --release --locked -p socketry --example idle_memory
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
echo "== bench: npm ci (ws, for the compression row)"
(cd interop/node && npm ci --no-audit --no-fund --silent)

# As high as this machine lets a process go: the many-connection runs need it.
ulimit -Hn 120000 2> /dev/null || true
ulimit -n 120000 2> /dev/null || ulimit -n "$(ulimit -Hn)"
# The processes of a spread-out run (run_sharded), stopped on every way out.
SHARD_PIDS=()
stop_shards() {
  local pid
  for pid in "${SHARD_PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${SHARD_PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
  SHARD_PIDS=()
}
trap 'stop_server; stop_shards' EXIT
trap 'exit 130' INT TERM
# start_server NAME [extra args]: NAME is a bench_server implementation or node-ws.
start_server() {
  local name="$1"; shift
  PORT=$((PORT + 1))
  if [ "$name" = node-ws ]; then
    "${PIN_SERVER[@]}" node interop/node/echo_server.mjs "$PORT" "$@" 2>> "$OUT/servers.log" &
  else
    "${PIN_SERVER[@]}" "$BIN/bench_server" "$name" "127.0.0.1:$PORT" "$@" 2>> "$OUT/servers.log" &
  fi
  server_pid=$!
  wait_port "$PORT"
}

# Shapes: name connections size inflight extra-load-args
SHAPES=(
  "100x20B 100 20 1"
  "10x1KiB 10 1024 1"
  "10x16KiB 10 16384 1"
  "200x16KiB 200 16384 1"
  "500x16KiB 500 16384 1"
  "512x5Bx16 512 5 16"
  "1x1MiB 1 1048576 1"
)
# socketry: the borrowing receive (recv_with); socketry-owned: recv + feed of a Message; the
# socketry-axum servers lend through Conn::recv_with (socketry-axum: through axum::serve;
# socketry-axum-serve: through socketry_axum::serve).
SERVERS=(socketry socketry-owned socketry-axum socketry-axum-serve fastwebsockets tungstenite axum tcp)
# The compression row: 16 KiB JSON-like text, 10 connections; socketry plain (same text) for
# the CPU comparison, socketry and Node ws with permessage-deflate at level 1.
COMPRESSION=("socketry:--text:" "socketry:--compression:--compression" "node-ws:--compression:--deflate")

# The kind of row run_load writes: throughput (pinned, one thread), throughput_mt (many cores)
# or connections (the many-connection runs).
KIND=throughput
# Many cores: the multi-thread runtime with a worker per core, server and load unpinned, as
# most users run it; the peers that the targets name, and the TCP echo.
MT_SERVERS=(socketry socketry-axum fastwebsockets tungstenite tcp)
# Many connections (one 20 B message in flight each), multi-thread and unpinned too. 50,000
# in one process needs a file limit of at least 50,000 + 1,000; where the hard limit is lower
# (and cannot be raised: no CAP_SYS_RESOURCE), they are spread over several server processes
# (run_sharded), and the report says how many.
MANY=(${MANY_COUNTS:-10000 50000})
MANY_SERVERS=(socketry socketry-axum fastwebsockets tungstenite)
# PER_PROCESS: connections per server process at most (default: the file limit less 1,000);
# the smoke run sets it low so that the spreading over processes runs too.
if [ "$SMOKE" = 1 ]; then MANY=(300); MANY_SERVERS=(socketry); PER_PROCESS=200; fi

# CPU time (user + system, clock ticks) the server process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2> /dev/null || echo 0; }
run_load() { # shape server label load-args...
  local shape="$1" server="$2"; shift 2
  local line before after
  before=$(cpu_ticks "$server_pid")
  if ! line=$("${PIN_LOAD[@]}" timeout 120 "$BIN/bench_load" "ws://127.0.0.1:$PORT/" "$@"); then
    echo "bench: $server / $shape failed" >&2
    return 1
  fi
  after=$(cpu_ticks "$server_pid")
  echo "{\"kind\":\"$KIND\",\"shape\":\"$shape\",\"server\":\"$server\",\"server_cpu_ticks\":$((after - before)),\"ticks_per_s\":$(getconf CLK_TCK),\"result\":$line}" >> "$RESULTS"
  printf '  %-16s %-12s %s\n' "$server" "$shape" "$(echo "$line" | sed 's/.*"msgs_per_s":\([0-9.]*\).*"p50_us":\([0-9]*\),"p99_us":\([0-9]*\).*/\1 msg\/s  p50 \2 us  p99 \3 us/')"
}

if part micro; then
if [ "$SMOKE" = 1 ]; then
  echo "== bench: micro-benchmarks (build only)"
  cargo bench --locked -p socketry-bench --bench micro --no-run
else
  echo "== bench: micro-benchmarks (criterion)"
  cargo bench --locked -p socketry-bench --bench micro 2>&1 | grep -E "time:" || true
fi
fi

if part throughput; then
echo "== bench: throughput ($REPS repetitions x ${DURATION} s, servers interleaved)"
for rep in $(seq "$REPS"); do
  echo "-- repetition $rep"
  for entry in "${SHAPES[@]}"; do
    read -r shape conns size inflight <<< "$entry"
    for server in "${SERVERS[@]}"; do
      start_server "$server"
      run_load "$shape" "$server" --connections "$conns" --size "$size" --inflight "$inflight" --duration "$DURATION"
      stop_server
    done
  done
  for entry in "${COMPRESSION[@]}"; do
    IFS=: read -r server load_flag server_flag <<< "$entry"
    label="$server${server_flag:+ +deflate}"
    start_server "$server" $server_flag
    run_load "16KiB-json" "$label" --connections 10 --size 16384 --duration "$DURATION" $load_flag
    stop_server
  done
done
fi

# The many-core and many-connection runs: nothing pinned.
SAVED_PIN_SERVER=("${PIN_SERVER[@]}"); SAVED_PIN_LOAD=("${PIN_LOAD[@]}")
PIN_SERVER=(); PIN_LOAD=()
if part mt; then
echo "== bench: many cores (multi-thread runtime, $(nproc) workers, server and load unpinned)"
KIND=throughput_mt
for rep in $(seq "$REPS"); do
  echo "-- repetition $rep"
  for entry in "${SHAPES[@]}"; do
    read -r shape conns size inflight <<< "$entry"
    for server in "${MT_SERVERS[@]}"; do
      [ "$SMOKE" = 1 ] && [ "$server" != socketry ] && continue
      start_server "$server" --threads "$(nproc)"
      run_load "$shape" "$server" --connections "$conns" --size "$size" --inflight "$inflight" --duration "$DURATION"
      stop_server
    done
  done
done
fi

# run_sharded COUNT SERVER SHARDS: COUNT connections over SHARDS server processes (each on
# its own port, the multi-thread runtime on every core) and as many load processes, which
# open their connections, then measure the same window (--barrier); one row, with the
# messages summed and the percentiles of every round trip of every load process.
run_sharded() {
  local count="$1" server="$2" shards="$3" i n pids=() ports=() loads=() before=0 after=0
  local barrier="$OUT/barrier"
  for i in $(seq 0 $((shards - 1))); do
    start_server "$server" --threads "$(nproc)"
    pids+=("$server_pid"); ports+=("$PORT"); SHARD_PIDS+=("$server_pid"); server_pid=""
  done
  for i in "${pids[@]}"; do before=$((before + $(cpu_ticks "$i"))); done
  rm -rf "$barrier"; mkdir -p "$barrier"
  for i in $(seq 0 $((shards - 1))); do
    n=$(( count / shards + (i < count % shards ? 1 : 0) ))
    # Bounded past the barrier's 300 s below, the window and the close.
    timeout 600 "$BIN/bench_load" "ws://127.0.0.1:${ports[$i]}/" --connections "$n" --size 20 \
      --inflight 1 --duration "$DURATION_MANY" --barrier "$barrier" --rtts "$OUT/rtts.$i" \
      > "$OUT/load.$i.json" &
    loads+=("$!"); SHARD_PIDS+=("$!")
  done
  # Every load process has opened its connections, or one died (its wait below fails).
  local dead=0 pid
  for _ in $(seq 3000); do
    [ "$(find "$barrier" -name 'ready.*' | wc -l)" -ge "$shards" ] && break
    for pid in "${loads[@]}"; do kill -0 "$pid" 2> /dev/null || dead=1; done
    [ "$dead" = 1 ] && break
    sleep 0.1
  done
  touch "$barrier/go"
  local failed=0
  for i in "${loads[@]}"; do wait "$i" || failed=1; done
  for i in "${pids[@]}"; do after=$((after + $(cpu_ticks "$i"))); done
  stop_shards
  if [ "$failed" = 1 ]; then
    echo "bench: $server / ${count}x20B failed" >&2
    return 1
  fi
  local line
  line=$(python3 - "$OUT" "$shards" << 'PY'
import json, struct, sys
out, shards = sys.argv[1], int(sys.argv[2])
parts = [json.load(open(f"{out}/load.{i}.json")) for i in range(shards)]
rtts = []
for i in range(shards):
    with open(f"{out}/rtts.{i}", "rb") as f:
        data = f.read()
    rtts.extend(struct.unpack(f"<{len(data) // 4}I", data))
rtts.sort()
pick = lambda p: rtts[min(int(len(rtts) * p), len(rtts) - 1)] if rtts else 0
row = dict(parts[0])
for key in ("connections", "messages", "msgs_per_s", "mb_per_s", "errors"):
    row[key] = sum(p[key] for p in parts)
row.update(p50_us=pick(0.5), p99_us=pick(0.99), processes=shards)
print(json.dumps(row, separators=(",", ":")))
PY
)
  rm -rf "$OUT"/rtts.* "$OUT"/load.*.json "$barrier"
  echo "{\"kind\":\"connections\",\"shape\":\"${count}x20B\",\"server\":\"$server\",\"server_cpu_ticks\":$((after - before)),\"ticks_per_s\":$(getconf CLK_TCK),\"result\":$line}" >> "$RESULTS"
  printf '  %-16s %-12s %s\n' "$server" "${count}x20B" "$(echo "$line" | sed 's/.*"msgs_per_s":\([0-9.]*\).*"p50_us":\([0-9]*\),"p99_us":\([0-9]*\).*/\1 msg\/s  p50 \2 us  p99 \3 us/') ($shards processes)"
}

if part many; then
echo "== bench: many connections (20 B, one in flight each, ${DURATION_MANY} s; multi-thread, unpinned)"
KIND=connections
for count in "${MANY[@]}"; do
  # Past the file limit, the connections are spread over server processes of up to
  # (limit - 1,000) each, and the run says so.
  per_process=${PER_PROCESS:-$(( $(ulimit -n) - 1000 ))}
  if [ "$per_process" -lt 1 ]; then
    echo "  $count connections: skipped, the file limit is $(ulimit -n)"
    continue
  fi
  shards=$(( (count + per_process - 1) / per_process ))
  [ "$shards" -gt 1 ] && echo "  $count connections: at most $per_process per process (file limit $(ulimit -n), hard $(ulimit -Hn)): $shards server processes and $shards load processes"
  for rep in $(seq "$REPS"); do
    for server in "${MANY_SERVERS[@]}"; do
      if [ "$shards" -gt 1 ]; then
        run_sharded "$count" "$server" "$shards"
        continue
      fi
      start_server "$server" --threads "$(nproc)"
      run_load "${count}x20B" "$server" --connections "$count" --size 20 --inflight 1 --duration "$DURATION_MANY"
      stop_server
    done
  done
done
fi
PIN_SERVER=("${SAVED_PIN_SERVER[@]}"); PIN_LOAD=("${SAVED_PIN_LOAD[@]}"); KIND=throughput

# Own work: instructions per message under callgrind; syscalls per message under strace.
CG_SERVERS=(socketry socketry-owned fastwebsockets tungstenite axum tcp)
CG_SIZES=("20 2000 10000" "16384 200 1000" "1048576 4 20")
if [ "$SMOKE" = 1 ]; then CG_SERVERS=(socketry); CG_SIZES=("20 10 20"); fi
callgrind_total() { # server size messages [server-flag] [load-flag] -> instructions
  local server="$1" size="$2" messages="$3" server_flag="${4:-}" load_flag="${5:-}"
  local file="$OUT/callgrind.out"
  PORT=$((PORT + 1))
  valgrind --tool=callgrind --callgrind-out-file="$file" \
    "$BIN/bench_server" "$server" "127.0.0.1:$PORT" --exit-after 1 $server_flag 2> /dev/null &
  server_pid=$!
  wait_port "$PORT"
  "$BIN/bench_load" "ws://127.0.0.1:$PORT/" --connections 1 --size "$size" --messages "$messages" $load_flag > /dev/null
  wait "$server_pid" || true
  server_pid=""
  local total
  total=$(awk '/^summary:/ { print $2 }' "$file")
  [ -n "$total" ] || { echo "bench: callgrind run of $server failed" >&2; return 1; }
  rm -f "$file"
  echo "$total"
}
if part instructions; then
echo "== bench: instructions per message (callgrind)"
for entry in "${CG_SIZES[@]}"; do
  read -r size small large <<< "$entry"
  for server in "${CG_SERVERS[@]}"; do
    a=$(callgrind_total "$server" "$size" "$small")
    b=$(callgrind_total "$server" "$size" "$large")
    per=$(( (b - a) / (large - small) ))
    echo "{\"kind\":\"instructions\",\"server\":\"$server\",\"size\":$size,\"per_message\":$per}" >> "$RESULTS"
    printf '  %-16s %8s B  %12s instructions/message\n' "$server" "$size" "$per"
  done
done
fi

if part compression; then
echo "== bench: compression CPU, 16 KiB JSON-like text (callgrind)"
cg_small=100; cg_large=500
[ "$SMOKE" = 1 ] && { cg_small=5; cg_large=10; }
# deflate: the default settings (socketry's level-1 compressor, 15-bit window; the client's
# window limited to 12 bits); deflate-w12: the same with a 12-bit window of ours, the default
# before 2026-12-07, which cannot reach the previous copy of the message.
for mode in plain deflate deflate-w12; do
  case "$mode" in
    plain) sflag=""; lflag="--text" ;;
    deflate) sflag="--compression"; lflag="--compression" ;;
    deflate-w12) sflag="--compression --compression-window 12"; lflag="--compression" ;;
  esac
  a=$(callgrind_total socketry 16384 "$cg_small" "$sflag" "$lflag")
  b=$(callgrind_total socketry 16384 "$cg_large" "$sflag" "$lflag")
  per=$(( (b - a) / (cg_large - cg_small) ))
  echo "{\"kind\":\"compression_instructions\",\"mode\":\"$mode\",\"per_message\":$per}" >> "$RESULTS"
  printf '  socketry %-8s %12s instructions/message\n' "$mode" "$per"
done

echo "== bench: memory per compressing connection, windows full (idle_memory example)"
comp_conns=1000; [ "$SMOKE" = 1 ] && comp_conns=50
for mode in default window12 client15 level6 no-context; do
  line=$(timeout 600 "$BIN/examples/idle_memory" --connections "$comp_conns" --compression "$mode")
  kib=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) KiB) per connection.*/\1/p')
  [ -n "$kib" ] || { echo "bench: idle_memory --compression $mode failed: $line" >&2; exit 1; }
  echo "{\"kind\":\"compression_memory\",\"mode\":\"$mode\",\"connections\":$comp_conns,\"kib_per_connection\":$kib}" >> "$RESULTS"
  printf '  %-12s %s KiB/connection\n' "$mode" "$kib"
done

echo "== bench: compression ratio and speed per setting (deflate_ratio)"
ratio_rounds=100; [ "$SMOKE" = 1 ] && ratio_rounds=2
"$BIN/deflate_ratio" --rounds "$ratio_rounds" | tee -a "$RESULTS" | sed 's/^/  /'
fi

strace_total() { # server messages-per-connection -> syscalls
  local server="$1" messages="$2" file="$OUT/strace.out" conns=512
  [ "$SMOKE" = 1 ] && conns=8
  PORT=$((PORT + 1))
  strace -f -c -o "$file" "$BIN/bench_server" "$server" "127.0.0.1:$PORT" --exit-after "$conns" 2> /dev/null &
  server_pid=$!
  wait_port "$PORT"
  "$BIN/bench_load" "ws://127.0.0.1:$PORT/" --connections "$conns" --size 5 --inflight 16 --messages "$messages" > /dev/null
  wait "$server_pid" || true
  server_pid=""
  awk '$NF == "total" { print $(NF-2) }' "$file"
}
if part syscalls; then
echo "== bench: syscalls per message, 512 connections x 5 B x 16 in flight (strace -c)"
for server in socketry fastwebsockets tungstenite axum tcp; do
  [ "$SMOKE" = 1 ] && [ "$server" != socketry ] && continue
  a=$(strace_total "$server" 160)
  b=$(strace_total "$server" 800)
  conns=512; [ "$SMOKE" = 1 ] && conns=8
  per=$(python3 -c "print(round(($b - $a) / ($conns * 640), 3))")
  echo "{\"kind\":\"syscalls\",\"server\":\"$server\",\"per_message\":$per}" >> "$RESULTS"
  printf '  %-16s %s syscalls/message\n' "$server" "$per"
done
fi

if part idle; then
echo "== bench: idle memory ($IDLE idle connections)"
for server in socketry socketry-axum socketry-axum-serve fastwebsockets tungstenite axum node-ws; do
  [ "$SMOKE" = 1 ] && [ "$server" != socketry ] && continue
  start_server "$server"
  per=$(idle_kib_per_connection "$BIN" "$server_pid" "ws://127.0.0.1:$PORT/" "$IDLE" "$OUT")
  stop_server
  echo "{\"kind\":\"idle\",\"server\":\"$server\",\"connections\":$IDLE,\"kib_per_connection\":$per}" >> "$RESULTS"
  printf '  %-16s %s KiB/connection\n' "$server" "$per"
done
fi

if [ "$SMOKE" = 1 ]; then
  python3 scripts/bench_report.py "$RESULTS" --check
  if part many && ! grep -q '"processes":2' "$RESULTS"; then
    echo "bench: the smoke run did not spread its connections over processes" >&2
    exit 1
  fi
  echo "== bench: smoke run ok"
elif [ "$PARTS" != all ]; then
  python3 scripts/bench_report.py "$RESULTS" | tee "$OUT/report.md"
else
  python3 scripts/bench_report.py "$RESULTS" --write docs/benchmarks.md --svg docs/bench-throughput.svg \
    --criterion "${CARGO_TARGET_DIR:-$ROOT/target}/criterion"
fi
