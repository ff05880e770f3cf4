#!/usr/bin/env bash
# make sanitize: builds fp with AddressSanitizer and UndefinedBehaviorSanitizer into
# build-sanitize, runs the C unit tests there and a smoke subset of the integration tests with
# that fp (attach, commands, streams, outside reads). The injected library is not run under
# ASan here (a target process would need the ASan runtime preloaded).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${SANITIZE_BUILD:-build-sanitize}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build" -DFP_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j "$jobs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure
# One interpreter old and one new: the client's code paths do not depend on the target's version.
FP_PYTHONS=${FP_PYTHONS:-py3.12,py3.8} FP_BUILD="$root/$build" python3 -m pytest -q \
  tests/integration/test_getglobal.py tests/integration/test_errors.py \
  tests/integration/test_watch.py tests/integration/test_stack.py \
  tests/integration/test_perf.py::test_collapsed_and_rate tests/integration/test_console.py
