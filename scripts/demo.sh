#!/usr/bin/env bash
# make demo: start the example shop service, show a few commands, and attach fp's shell to it.
# Usage: scripts/demo.sh [BUILD_DIR]   (FP_DEMO_PORT picks the port, 8765 by default)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
fp="$build/bin/fp"
[ -x "$fp" ] || { echo "demo: $fp is not built (make build)" >&2; exit 1; }

# The newest CPython 3.8+ from pyenv, else python3.
py=""
if pyroot=$(pyenv root 2>/dev/null) || pyroot="$HOME/.pyenv"; [ -d "$pyroot/versions" ]; then
  newest=$(ls -d "$pyroot"/versions/3.* 2>/dev/null | grep -E '/3\.([89]|1[0-9])\.[0-9]+$' | sort -V | tail -n 1 || true)
  [ -n "$newest" ] && [ -x "$newest/bin/python3" ] && py="$newest/bin/python3"
fi
py=${py:-$(command -v python3)}

log=$(mktemp -d)/service.out
"$py" "$root/examples/service.py" >"$log" 2>&1 &
svc=$!
# The service is stopped on the way out, however the demo ends. Its exit status (143, killed
# by our SIGTERM) is not the demo's: `make demo` fails only when fp does.
cleanup() {
  kill "$svc" 2>/dev/null || true
  wait "$svc" 2>/dev/null || true
  rm -rf "$(dirname "$log")"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ready when it prints "pid=... port=..." (bounded: 10 s).
for _ in $(seq 100); do
  grep -q '^pid=' "$log" 2>/dev/null && break
  kill -0 "$svc" 2>/dev/null || { echo "demo: the service exited:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep -q '^pid=' "$log" || { echo "demo: the service did not start within 10 s:" >&2; cat "$log" >&2; exit 1; }
port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' "$log" | head -n 1)

cat <<MSG
The example shop service runs under $("$py" -V 2>&1) as PID $svc on http://127.0.0.1:$port
(a background thread keeps ordering from it). Try, in the fp shell that opens now:

  status
  getglobal shop.inventory ITEMS -x 2
  getglobal shop.inventory Warehouse recent_orders
  getglobal shop.pricing PriceBook -e "target.quote('coffee', 3)"
  module $root/examples/shop/pricing.py
  stack
  console            (then e.g.: import __main__; __main__.STATS)
  help

Or one command from another terminal: $fp $svc --cmd "getglobal __main__ STATS"
Leave with quit; the service is stopped then.

MSG
# Ctrl-C inside the shell is fp's (it stops a watch): once fp is running, the demo only waits
# for it, and ends with fp's own status.
trap ':' INT
status=0
"$fp" "$svc" || status=$?
exit "$status"
