#!/usr/bin/env bash
# Installs what building and testing fp needs on Debian/Ubuntu, only when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libuv1-dev libcjson-dev libelf-dev libdw-dev libunwind-dev libedit-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# The Neovim plugin's tests run in a headless Neovim (Debian's neovim, 0.7 or newer).
if ! command -v nvim >/dev/null 2>&1; then
  echo "Installing: neovim (for the Neovim plugin's tests)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq neovim; }; then
    echo "neovim could not be installed: the Neovim plugin's tests will be skipped" >&2
  fi
fi
# The integration tests run under pytest.
py=${FP_TEST_PYTHON:-python3}
if ! "$py" -c 'import pytest' 2>/dev/null; then
  "$py" -m pip install -q pytest
fi
