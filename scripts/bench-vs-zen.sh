#!/usr/bin/env bash
# Decision tables side by side: the purchase-approval rules as one table, evaluated natively by
# zen-engine (GoRules' Rust engine, pinned in scripts/bench-zen/Cargo.lock; a scratch crate, not a
# project dependency) and by flowgate-tables; then the decision-table plugin's full call through
# the sandbox, beside the hand-written purchase-approval plugin's (the plugin_call benchmark).
#
# Usage: scripts/bench-vs-zen.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
source ./scripts/ensure-toolchain.sh
(cd scripts/bench-zen && CARGO_TARGET_DIR=../../target/bench-zen cargo build --release --quiet)
target/bench-zen/release/bench-zen "$@"
echo
cargo bench -p flowgate-tests --bench plugin_call -- --quick |
  grep -E '^\|(---| (measurement|full call on a fresh store \(pooling, 1 MiB resident, CoW\)|floor|decision-table|same logic))'
