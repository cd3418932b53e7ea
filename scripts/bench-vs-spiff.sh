#!/usr/bin/env bash
# The issue-8 workload side by side: SpiffWorkflow 3.2.0 (Python, SQLite WAL with
# synchronous=FULL) and Flowgate (over HTTP and in process, 1 and 64 clients), in interleaved
# rounds on the same machine, 2,000 live instances each. SpiffWorkflow goes into a scratch venv
# under target/ (it is not a project dependency).
#
# Usage: scripts/bench-vs-spiff.sh [pairs (default 5)] [instances (default 2000)]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}
instances=${2:-2000}
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import SpiffWorkflow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "SpiffWorkflow==3.2.0"
fi
# Built once; every run below uses this same binary.
rounds=$(cargo bench -p flowgate-tests --bench rounds --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "rounds" and m.get("executable"):
        print(m["executable"])')
results=$(mktemp)
run() { # name, command...
  local name=$1
  shift
  local line
  line=$("$@" | tail -n 1)
  echo "$name $line" | tee -a "$results"
}
for pair in $(seq "$pairs"); do
  echo "== pair $pair"
  run spiff "$venv/bin/python" scripts/spiff-rounds.py --instances "$instances"
  for clients in 1 64; do
    run "http-$clients" "$rounds" --mode http --clients "$clients" --instances "$instances"
    run "engine-$clients" "$rounds" --mode engine --clients "$clients" --instances "$instances"
  done
done
python3 - "$results" <<'PY'
import json, sys, statistics
rows = {}
pairs = []
for line in open(sys.argv[1]):
    name, _, payload = line.partition(" ")
    result = json.loads(payload)
    rows.setdefault(name, []).append(result)
spiff = [r["instances_per_s"] for r in rows["spiff"]]
print("\n| run | instances/s (median, range) | x SpiffWorkflow (per pair: median, range) | client commands/s | commits / instance | changes / instance | p50 / p99 ms | CPU µs / command |")
print("|---|---|---|---|---|---|---|---|")
for name in ["spiff", "http-1", "http-64", "engine-1", "engine-64"]:
    rs = rows.get(name, [])
    if not rs:
        continue
    ips = [r["instances_per_s"] for r in rs]
    ratios = [r["instances_per_s"] / s for r, s in zip(rs, spiff)]
    cpu = [r.get("cpu_us_per_command") for r in rs if r.get("cpu_us_per_command") is not None]
    stuck = sum(len(r.get("stuck", [])) for r in rs)
    print(f"| {name} | {statistics.median(ips):.0f} ({min(ips):.0f}-{max(ips):.0f}) "
          f"| {statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}) "
          f"| {statistics.median(r['commands_per_s'] for r in rs):.0f} "
          f"| {statistics.median(r['commits_per_instance'] for r in rs):.2f} "
          f"| {statistics.median(r.get('changes_per_instance', r['commits_per_instance']) for r in rs):.2f} "
          f"| {statistics.median(r['p50_ms'] for r in rs):.2f} / {statistics.median(r['p99_ms'] for r in rs):.2f} "
          f"| {statistics.median(cpu):.0f} |" if cpu else
          f"| {name} | {statistics.median(ips):.0f} ({min(ips):.0f}-{max(ips):.0f}) | 1.0x | "
          f"{statistics.median(r['commands_per_s'] for r in rs):.0f} | {statistics.median(r['commits_per_instance'] for r in rs):.2f} | | "
          f"{statistics.median(r['p50_ms'] for r in rs):.2f} / {statistics.median(r['p99_ms'] for r in rs):.2f} | |")
    if stuck:
        print(f"FINDING: {name}: {stuck} instance(s) stopped moving")
PY
