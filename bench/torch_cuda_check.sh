#!/usr/bin/env bash
# The CUDA paths of `torch profile` and `torch memory`, on a machine with an NVIDIA GPU: a small
# model trained on the GPU (tests/targets/torch_model.py cuda), then
#   torch profile (CUDA activities: kernels in the summary and the trace),
#   torch memory -s (the caching allocator's snapshot), torch memory -r (its history of a call).
# The CPU paths are in tests/integration/test_torch.py; this needs what CI machines lack.
#
# Usage: bench/torch_cuda_check.sh [BUILD]   (default ./build)
#   FP_TORCH_PYTHON: a python whose torch is a CUDA build (default: the first environment
#   tests/integration/torch_env.py made, else python3). Exit 0: every check passed; 1: one
#   failed (each prints PASS or FAIL with what it saw); 2: no usable GPU here.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
FP="$BUILD/bin/fp"
PY=${FP_TORCH_PYTHON:-}
if [ -z "$PY" ]; then
  for cand in "${FP_TORCH_CACHE:-$HOME/.cache/fp/torch}"/*/bin/python python3; do
    if "$cand" -c 'import torch' 2>/dev/null; then PY=$cand; break; fi
  done
fi
[ -x "$FP" ] || { echo "fp is not built at $FP (make build)"; exit 2; }
[ -n "$PY" ] || { echo "no python with torch found: set FP_TORCH_PYTHON"; exit 2; }
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no GPU: torch.cuda.is_available() is False for $PY; nothing run"
  exit 2
fi
OUT=$(mktemp -d /tmp/fp-torch-cuda.XXXXXX)
mkfifo "$OUT/ready"
"$PY" tests/targets/torch_model.py "$OUT/ready" cuda >"$OUT/target.out" 2>"$OUT/target.err" &
TARGET=$!
trap 'kill $TARGET 2>/dev/null; wait $TARGET 2>/dev/null' EXIT
timeout 120 cat "$OUT/ready" >"$OUT/facts" || { echo "FAIL the CUDA target did not start"; cat "$OUT/target.err"; exit 1; }
echo "target $TARGET: $(tr '\n' ' ' <"$OUT/facts")"
failed=0

check() { # name, then a python snippet reading the JSON Lines of fp on stdin
  local name=$1 code=$2 file=$3
  if "$PY" -c "$code" "$file" <"$OUT/$name.jsonl"; then echo "PASS $name"; else echo "FAIL $name"; failed=1; fi
}

"$FP" "$TARGET" --json --timeout 60 --cmd "torch profile __main__ Net forward -f $OUT/trace.json" >"$OUT/profile.jsonl"
check profile '
import json, sys
recs = [json.loads(l) for l in sys.stdin]
ev = [r["notification"]["params"] for r in recs if r.get("notification", {}).get("method") == "torch/profile"][0]
print("  activities", ev["activities"], "self_cuda_ms", ev.get("self_cuda_ms"), "cuda ops", [o["name"] for o in ev.get("cuda_ops", [])][:3])
assert ev["activities"] == ["cpu", "cuda"], ev
assert ev["cuda_ops"] and ev["self_cuda_ms"] > 0, ev
assert any(m["device"] == "cuda" and m["allocations"] > 0 for m in ev["memory"]), ev["memory"]
trace = json.load(open(sys.argv[1]))
kernels = [e for e in trace["traceEvents"] if e.get("cat") == "kernel"]
print("  kernels in the trace:", len(kernels))
assert kernels
' "$OUT/trace.json"

"$FP" "$TARGET" --json --timeout 60 --cmd "torch memory -s -f $OUT/snapshot.pickle" >"$OUT/snapshot.jsonl"
check snapshot '
import json, pickle, sys
r = [json.loads(l) for l in sys.stdin][0]["result"]
print("  devices", r["devices"])
assert r["devices"] and r["devices"][0]["reserved_bytes"] > 0 and r["largest"], r
snap = pickle.load(open(sys.argv[1], "rb"))
assert snap["segments"], list(snap)
' "$OUT/snapshot.pickle"

"$FP" "$TARGET" --json --timeout 60 --cmd "torch memory -r __main__ Net forward -f $OUT/record.pickle" >"$OUT/record.jsonl"
check record '
import json, pickle, sys
recs = [json.loads(l) for l in sys.stdin]
ev = [r["notification"]["params"] for r in recs if r.get("notification", {}).get("method") == "torch/memory"][0]
d = ev["devices"][0]
print("  device 0", d, "largest", ev["largest"][:2])
assert d["counts"]["alloc"] > 0 and d["peak_allocated_bytes"] >= d["start_allocated_bytes"], d
assert any((a.get("origin") or {}).get("file", "").endswith("torch_model.py") for a in ev["largest"]), ev["largest"]
snap = pickle.load(open(sys.argv[1], "rb"))
assert any(snap["device_traces"]), "no history in the snapshot"
' "$OUT/record.pickle"

# Nothing left behind: no profiler, no history recording, no probe; the target's own checks hold.
"$FP" "$TARGET" --json --cmd 'getglobal torch.autograd.profiler _is_profiler_enabled -r' >"$OUT/left.jsonl"
"$FP" "$TARGET" --json --cmd 'getglobal torch _C -e "target._cuda_isHistoryEnabled()" -r' >>"$OUT/left.jsonl"
check left '
import json, sys
values = [json.loads(l)["result"]["value"]["repr"] for l in sys.stdin]
print("  profiler on, history on:", values)
assert values == ["False", "False"], values
' ""
if grep -q ERROR "$OUT/target.out"; then echo "FAIL the target reported errors"; grep ERROR "$OUT/target.out"; failed=1; fi
echo "target stderr (torch's own lines only are expected):"; sed 's/^/  /' "$OUT/target.err"
echo "outputs in $OUT"
exit $failed
