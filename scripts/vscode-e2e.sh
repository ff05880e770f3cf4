#!/usr/bin/env bash
# The VS Code extension's part of `make test`: its unit tests and the .vsix, then the end-to-end
# test in a real VS Code (code-server + headless Chromium, vscode-ext/test/e2e/run.mjs).
# Usage: scripts/vscode-e2e.sh BUILD_DIR
#
# What it needs is installed when missing: the apt packages (test/e2e/install-deps.sh), the
# extension's npm packages (npm ci), code-server and the Node it runs on (test/e2e/code-server.mjs,
# cached in ~/.cache/fp-e2e). When one of these installs cannot be done here (no registry, no
# root for apt), the end-to-end test is skipped with the reason and the install's last lines;
# FP_E2E_REQUIRED=1 (make vscode-e2e) makes that a failure. A failing test is always a failure.
set -uo pipefail
build=$(cd "${1:-build}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
ext=$repo/vscode-ext
out=$build/vscode-e2e
log=$out/install.log
mkdir -p "$out"
: >"$log"
t0=$(date +%s)

skip() {
  echo "vscode-e2e: SKIPPED: $1"
  if [ -s "$log" ]; then
    echo "  last lines of $log:"
    tail -n 15 "$log" | sed 's/^/  | /'
  fi
  if [ "${FP_E2E_REQUIRED:-0}" = 1 ]; then
    echo "vscode-e2e: FP_E2E_REQUIRED=1, so a skip is a failure"
    exit 1
  fi
  echo "  (the rest of make test is not affected; FP_E2E_REQUIRED=1 turns this skip into a failure)"
  exit 0
}

command -v node >/dev/null && command -v npm >/dev/null ||
  skip "Node.js and npm are not installed: install Node.js 20 or newer (apt-get install nodejs npm)."
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || skip "Node.js $(node --version) is too old: the extension's tools need Node.js 20 or newer."

echo "vscode-e2e: apt packages (chromium, build-essential, python3, libkrb5-dev)"
nice "$ext/test/e2e/install-deps.sh" >>"$log" 2>&1 ||
  skip "the apt packages the test needs could not be installed (run vscode-ext/test/e2e/install-deps.sh as root)."

if [ ! -f "$ext/node_modules/.package-lock.json" ] || [ "$ext/package-lock.json" -nt "$ext/node_modules/.package-lock.json" ]; then
  echo "vscode-e2e: npm ci (the extension's packages, pinned by package-lock.json)"
  (cd "$ext" && nice npm ci --no-audit --no-fund) >>"$log" 2>&1 ||
    skip "npm ci could not install the extension's packages from the npm registry."
fi

# From here on a failure is the extension's, not the machine's.
echo "vscode-e2e: unit tests and the .vsix"
(cd "$ext" && FP_BUILD="$build" nice npm test >"$out/unit.log" 2>&1) || {
  tail -n 40 "$out/unit.log"
  echo "vscode-e2e: the extension's unit tests failed (whole output: $out/unit.log)"
  exit 1
}
echo "vscode-e2e: unit tests: $(grep -E '^# (pass|fail) ' "$out/unit.log" | tr '\n' ' ')"
(cd "$ext" && nice npm run package -- --out "$build/fp-vscode.vsix" >"$out/package.log" 2>&1) || {
  tail -n 40 "$out/package.log"
  echo "vscode-e2e: building the .vsix failed (typecheck, lint or packaging; whole output: $out/package.log)"
  exit 1
}

echo "vscode-e2e: code-server and its Node (installed once, cached)"
(cd "$ext" && nice node test/e2e/code-server.mjs) >>"$log" 2>&1 ||
  skip "code-server could not be installed from the npm registry."
tail -n 1 "$log"

cd "$ext" && FP_BUILD="$build" nice node test/e2e/run.mjs --vsix "$build/fp-vscode.vsix" --server "$build/bin/fp-lsp" --out "$out"
rc=$?
echo "vscode-e2e: $(($(date +%s) - t0)) s in all (installs included)"
exit $rc
