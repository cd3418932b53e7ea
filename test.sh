#!/usr/bin/env bash
# Runs every test: the plugins natively (their own workspace), then the host and the integration
# tests, which build the plugins to wasm components first (tests/build.rs).
set -euo pipefail
cd "$(dirname "$0")"
source ./scripts/ensure-toolchain.sh
source ./scripts/python-tools.sh

echo "== plugins: native unit tests"
(cd plugins && cargo test --workspace --quiet)

echo "== host and integration tests"
cargo test --workspace
