#!/usr/bin/env bash
# Runs every benchmark against BUILD_DIR's fp and prints their figures (no pass/fail).
# Narrow with FP_PYTHONS=py3.12,system-3.11 and FP_BENCH_RUNS=N.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
py=${FP_BENCH_PYTHON:-python3}
failed=()
for script in attach_latency.py idle_cost.py perf_overhead.py gil_overhead.py stack_latency.py \
  watch_overhead.py monitor_overhead.py trace_overhead.py trace_instructions.py mem_summary.py \
  lsp_latency.py; do
  echo "== $script"
  "$py" "$here/$script" --build "$build" || failed+=("$script")
  echo
done
# Every script runs even when one fails; the failures are named at the end.
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: errors in: ${failed[*]}" >&2
  exit 1
fi
