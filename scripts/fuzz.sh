#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and runs each for SECONDS
# from its seed corpus and past crashes. Usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]
# New inputs go to a scratch directory, not to the seeds. An input that crashes a target (or
# runs into a loop: -timeout) is copied to tests/fuzz/regressions/NAME/, where ctest replays it
# from then on: commit it with the fix. Exit status 1 when any target failed.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-300}
shift 2 || true
repo=$(cd "$(dirname "$0")/.." && pwd)

# Debian's clang and its libFuzzer runtime, when missing.
need=()
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

cmake -S "$repo" -B "$build" -DFP_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$repo"/tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    targets+=("${n#fuzz_}")
  done
fi

failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t/corpus" "$scratch/$t/artifacts"
  seeds=("$repo/tests/fuzz/corpus/$t")
  [ -d "$repo/tests/fuzz/regressions/$t" ] && seeds+=("$repo/tests/fuzz/regressions/$t")
  log="$scratch/$t/log"
  set +e
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$scratch/$t/artifacts/" -print_final_stats=1 \
    "$scratch/$t/corpus" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ $rc -ne 0 ] || ls "$scratch/$t/artifacts/"* >/dev/null 2>&1; then
    failed=1
    mkdir -p "$repo/tests/fuzz/regressions/$t"
    cp "$scratch/$t/artifacts/"* "$repo/tests/fuzz/regressions/$t/" 2>/dev/null || true
    echo "fuzz_$t: FAILED after $runs runs; the input is in tests/fuzz/regressions/$t/"
    grep -E 'ERROR|SUMMARY|runtime error|Assertion|timeout' "$log" | head -20
  else
    echo "fuzz_$t: $runs runs in ${seconds}s, $cov, no failure"
  fi
done
exit $failed
