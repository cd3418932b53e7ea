#!/usr/bin/env bash
# Builds the example plugins and the host, then runs Flowgate's main job on the example tenant.
set -euo pipefail
cd "$(dirname "$0")"
source ./scripts/ensure-toolchain.sh

echo "== building the example plugins (wasm32-wasip2 components)"
(cd plugins && cargo build --release --target wasm32-wasip2 --quiet)
echo "== building the host"
cargo build -p flowgate-host --quiet

plugins=plugins/target/wasm32-wasip2/release
flowgate=target/debug/flowgate
export FLOWGATE_CACHE_DIR="${FLOWGATE_CACHE_DIR:-data/cwasm}"

echo "== purchase approval: who must approve 11,400.00 USD of laptops?"
"$flowgate" plugin eval "$plugins/purchase_approval.wasm" --capability approval-policy \
  --input examples/plugin-calls/purchase.json "$@"
echo "== ticket routing: where does a smoking charger go?"
"$flowgate" plugin eval "$plugins/ticket_routing.wasm" --capability router \
  --input examples/plugin-calls/ticket.json
echo "== expense reimbursement: what is paid back?"
"$flowgate" plugin eval "$plugins/expense_reimbursement.wasm" --capability step-action \
  --input examples/plugin-calls/expense-report.json
