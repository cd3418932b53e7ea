#!/usr/bin/env bash
# Runs the engine benchmark (64 in-process clients) and the HTTP benchmark (64 connections)
# alternately, PAIRS times, and prints each pair's client commands/s and their ratio. The
# machine's speed drifts (a shared VM), so only runs made side by side are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${PAIRS:-5}"
cargo bench -q -p flowgate-tests --bench engine --bench http --no-run >/dev/null 2>&1
printf '| pair | engine cmds/s | HTTP cmds/s | HTTP / engine | HTTP start p50/p99 ms | HTTP complete p50/p99 ms | daemon CPU µs/cmd | engine CPU µs/cmd |\n'
printf '|---:|---:|---:|---:|---|---|---:|---:|\n'
for i in $(seq "$pairs"); do
  engine=$(cargo bench -q -p flowgate-tests --bench engine -- --stored 0 --clients 64 --seconds 10 2>/dev/null | grep '| empty')
  http=$(cargo bench -q -p flowgate-tests --bench http -- --seconds 10 2>/dev/null)
  e_cmds=$(echo "$engine" | awk -F'|' '{gsub(/ /,"",$4); print $4}')
  e_cpu=$(echo "$engine" | awk -F'|' '{gsub(/ /,"",$9); print $9}')
  h_cmds=$(echo "$http" | awk -F'|' '/all client commands/ {gsub(/ /,"",$3); print $3}')
  start=$(echo "$http" | awk -F'|' '/start instance/ {gsub(/ /,"",$4); gsub(/ /,"",$5); print $4"/"$5}')
  complete=$(echo "$http" | awk -F'|' '/complete task/ {gsub(/ /,"",$4); gsub(/ /,"",$5); print $4"/"$5}')
  h_cpu=$(echo "$http" | sed -n 's/.*per client command \([0-9]*\) µs.*/\1/p')
  ratio=$(awk -v h="$h_cmds" -v e="$e_cmds" 'BEGIN { printf "%.0f%%", 100 * h / e }')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$i" "$e_cmds" "$h_cmds" "$ratio" "$start" "$complete" "$h_cpu" "$e_cpu"
done
