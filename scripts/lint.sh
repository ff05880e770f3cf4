#!/usr/bin/env bash
# make lint: the C with clang-format, the Python (agent, tests, bench, scripts) with ruff, format
# and lint (ruff.toml). Installs clang-format (apt) and the pinned ruff (into a virtual
# environment under the build tree) when they are missing; builds nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${BUILD:-build}
ruff_version=0.17.5

if ! command -v clang-format >/dev/null; then
  echo "lint: installing clang-format"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang-format
fi
venv="$build/tools/ruff-$ruff_version"
if [ ! -x "$venv/bin/ruff" ]; then
  echo "lint: installing ruff $ruff_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "ruff==$ruff_version"
fi

status=0
echo "lint: clang-format"
clang-format --dry-run -Werror $(git ls-files '*.c' '*.h') || status=1
echo "lint: ruff format"
"$venv/bin/ruff" format --check --quiet . || status=1
echo "lint: ruff check"
"$venv/bin/ruff" check --quiet . || status=1
[ $status -eq 0 ] && echo "lint: clean"
exit $status
