#!/usr/bin/env bash
# Interleaved A/B throughput of bench_server builds in one shape, for changes whose effect is
# smaller than a full run's drift on a shared VM:
#
#   scripts/ab.sh REPS LABEL=BINARY:IMPL ...
#   e.g. cp target/release/bench_server /tmp/before   # (build the old commit first)
#        scripts/ab.sh 7 tcp=/tmp/before:tcp before=/tmp/before:socketry \
#          after=target/release/bench_server:socketry
#
# Shape from CONNECTIONS (512), SIZE (5), INFLIGHT (16), DURATION (2 s); server pinned to
# CPU 0, load to CPU 1 (as scripts/bench.sh). Prints every run, then each label's median and
# its ratio to the first label's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/lib.sh"
LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/bench_load"
reps="$1"; shift
ulimit -n "$(ulimit -Hn)"
PORT=9700
results=$(mktemp)
trap 'rm -f "$results"; [ -n "${pid:-}" ] && kill "$pid" 2> /dev/null || true' EXIT
for _ in $(seq "$reps"); do
  for spec in "$@"; do
    label="${spec%%=*}"; rest="${spec#*=}"; bin="${rest%%:*}"; impl="${rest#*:}"
    PORT=$((PORT + 1))
    "${PIN_SERVER[@]}" "$bin" "$impl" "127.0.0.1:$PORT" 2> /dev/null &
    pid=$!
    wait_port "$PORT"
    line=$("${PIN_LOAD[@]}" "$LOAD" "ws://127.0.0.1:$PORT/" --connections "${CONNECTIONS:-512}" \
      --size "${SIZE:-5}" --inflight "${INFLIGHT:-16}" --duration "${DURATION:-2}")
    kill "$pid"; wait "$pid" 2> /dev/null || true; pid=""
    rate=$(grep -o '"msgs_per_s":[0-9.]*' <<< "$line" | cut -d: -f2)
    echo "$label $rate" | tee -a "$results"
  done
done
python3 - "$results" "${1%%=*}" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, rate = line.split()
    runs.setdefault(label, []).append(float(rate))
first = statistics.median(runs[sys.argv[2]])
for label, rates in runs.items():
    median = statistics.median(rates)
    print(f"{label:12} median {median:12,.0f} msg/s  {median / first:.3f}x {sys.argv[2]}")
PY
