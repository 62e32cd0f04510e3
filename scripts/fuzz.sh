#!/usr/bin/env bash
# Runs every fuzz target with cargo-fuzz (libFuzzer) for SECONDS each (default 1800), on the
# stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer flags). It starts
# from the committed seeds in fuzz/corpus/<target>/ and grows its corpus in
# reports/fuzz/corpus/<target>/ (not committed: thousands of files; a later run picks it up),
# writing what libFuzzer reports to reports/fuzz/<target>.log.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Ends with the table docs/robustness.md shows (scripts/fuzz_summary.py).
# Crashes land in fuzz/artifacts/<target>/; add each as a corpus file (it then replays in
# `cargo test`, crates/socketry-proto/tests/fuzz_corpus.rs) with a regression test.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${1:-1800}"
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(frame_decoder handshake_request handshake_response extensions close_payload deflate_decoder deflate_round_trip inflate_against_zlib connection)
command -v cargo-fuzz > /dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
mkdir -p reports/fuzz
# Build once up front so that several copies of this script (one per core, each with its own
# targets) do not all wait on the same build lock at their first target.
(cd fuzz && cargo fuzz build)
failed=()
for target in "${TARGETS[@]}"; do
  echo "== fuzz: $target for ${SECONDS_EACH}s"
  mkdir -p "reports/fuzz/corpus/$target"
  # The first directory receives new inputs; the seeds are only read.
  (cd fuzz && cargo fuzz run "$target" "../reports/fuzz/corpus/$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -max_len=70000 -rss_limit_mb=2048 -print_final_stats=1) \
    > "reports/fuzz/$target.log" 2>&1 || { echo "fuzz: $target FAILED (see reports/fuzz/$target.log)"; failed+=("$target"); continue; }
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "reports/fuzz/$target.log" | tail -2
done
logs=()
for target in "${TARGETS[@]}"; do logs+=("reports/fuzz/$target.log"); done
python3 scripts/fuzz_summary.py "${logs[@]}"
# A crash in one target does not stop the others: each target's run is its own evidence.
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes or errors in: ${failed[*]}"
  exit 1
fi
