#!/usr/bin/env bash
# Builds the example plugins and the host, runs a purchase request of the example tenant
# (examples/acme) from start to end through the engine (data in data/flowgate.redb), then starts
# the daemon on 127.0.0.1:8080 for that tenant. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"
source ./scripts/ensure-toolchain.sh

echo "== building the example plugins (wasm32-wasip2 components)"
(cd plugins && cargo build --release --target wasm32-wasip2 --quiet)
echo "== building the host"
cargo build -p flowgate-host --quiet

export FLOWGATE_DATA_DIR="${FLOWGATE_DATA_DIR:-data}"
export RUST_LOG="${RUST_LOG:-warn}"
flowgate=target/debug/flowgate
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

echo "== the example tenant's workflows (deployed into $FLOWGATE_DATA_DIR/flowgate.redb)"
"$flowgate" workflow list | json '[print("  %s v%s" % (w["id"], w["version"])) for w in d]'

echo "== a purchase request: 11,400.00 USD of laptops (category it)"
instance=$("$flowgate" instance start purchase-request --by alice \
  --data '{"amount_cents": 1140000, "currency": "USD", "category": "it", "requester": "alice"}' \
  | json 'print(d["instance"]["id"])')
echo "  instance $instance"
"$flowgate" instance show "$instance" | json '[print("  the plugin decided:", e["reason"]) for e in d["history"] if e["event"] == "approval-required"]'

for step in "director dora approve" "it-reviewer ian approve"; do
  set -- $step
  task=$("$flowgate" task list --role "$1" | json "print([t['id'] for t in d if t['instance'] == '$instance'][0])")
  echo "== $2 ($1) approves task $task"
  "$flowgate" task complete "$task" --by "$2" --role "$1" --outcome "$3" >/dev/null
done
task=$("$flowgate" task list --role procurement | json "print([t['id'] for t in d if t['instance'] == '$instance'][0])")
echo "== pat (procurement) places the order"
"$flowgate" task complete "$task" --by pat --role procurement --data '{"po_number": "PO-2026-0001"}' \
  | json 'print("  instance", d["status"])'

echo "== its history (the audit trail)"
"$flowgate" instance show "$instance" | json '
for e in d["history"]:
    who = e["actor"].get("id") or e["actor"].get("name") or e["actor"]["type"]
    what = e.get("step") or e.get("task") or e.get("definition") or ""
    print("  %2d %-18s %-40s by %s" % (e["seq"], e["event"], what, who))'

echo "== the plugins on their own (flowgate plugin eval)"
plugins=plugins/target/wasm32-wasip2/release
"$flowgate" plugin eval "$plugins/ticket_routing.wasm" --capability router \
  --input examples/plugin-calls/ticket.json | json 'print("  ticket-routing:", d["result"]["next"], "-", d["result"]["reason"])'
"$flowgate" plugin eval "$plugins/expense_reimbursement.wasm" --capability step-action \
  --input examples/plugin-calls/expense-report.json | json 'print("  expense-reimbursement:", d["result"]["note"])'

cat <<'HELP'

== starting the daemon (Ctrl-C stops it). Example tokens: acme-admin-token (admin),
   acme-dora-token (director, manager), acme-ian-token (it-reviewer), acme-pat-token (procurement).
   The web app: open http://localhost:8080/ and sign in with one of those tokens.
   curl -H 'Authorization: Bearer acme-admin-token' localhost:8080/api/v1/definitions
   curl -H 'Authorization: Bearer acme-dora-token' 'localhost:8080/api/v1/tasks?role=director'
HELP
exec "$flowgate" serve --listen "${FLOWGATE_LISTEN:-127.0.0.1:8080}"
