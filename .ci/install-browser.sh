#!/usr/bin/env bash
# Install what the browser test (tests/ui) needs: Debian's chromium and playwright-core from
# tests/ui/package-lock.json. Idempotent; a second run only checks. No browser is ever downloaded by npm:
# playwright-core drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-browser: apt-get install chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

UI=tests/ui
if [ ! -f "$UI/node_modules/playwright-core/package.json" ] || [ "$UI/package-lock.json" -nt "$UI/node_modules/.package-lock.json" ]; then
  echo "install-browser: npm ci in $UI"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$UI" --no-audit --no-fund --loglevel=error
fi

echo "install-browser: $(chromium --version 2>/dev/null), node $(node --version)," \
  "playwright-core $(node -p "require('./$UI/node_modules/playwright-core/package.json').version")"
