#!/usr/bin/env bash
# The README's test command: installs the broker servers the cross-node tests start
# (scripts/brokers.sh), then runs every test of the workspace with every feature.
# Extra arguments go to `cargo test` (a test name filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/brokers.sh
exec cargo test --workspace --all-features --locked "$@"
