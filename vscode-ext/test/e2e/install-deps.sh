#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs on Debian/Ubuntu, only when something is missing:
# Chromium for the browser, and the compilers and headers code-server's native modules build with
# (kerberos needs the GSSAPI headers of libkrb5-dev).
set -euo pipefail
pkgs=(chromium build-essential python3 libkrb5-dev)
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
