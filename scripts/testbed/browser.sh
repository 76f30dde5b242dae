#!/usr/bin/env bash
# The browser end-to-end tests of the admin web UI: Debian's headless Chromium driven by
# playwright-core (npm, no browser download), with axe-core (npm) for the accessibility audit.
#
#   bash scripts/testbed/browser.sh install   # apt chromium + npm ci in tests/browser (idempotent)
#   bash scripts/testbed/browser.sh status    # exit 0 when both are in place
#
# The versions are pinned in tests/browser/package.json (+ package-lock.json). The Rust test
# crates/intake/tests/e2e/web.rs runs tests/browser/run.mjs against a real `intake serve`.
# A machine without apt/node only gets a message, unless INTAKE_REQUIRE_BROWSER=1.
set -euo pipefail

src="${BASH_SOURCE[0]}"
[[ "$src" == */* ]] || src="./$src"
ROOT="$(cd "${src%/*}/../.." && pwd)"
DIR="$ROOT/tests/browser"
CHROMIUM=/usr/bin/chromium

missing() {
  echo "browser: $1; the browser tests will be skipped" >&2
  if [[ "${INTAKE_REQUIRE_BROWSER:-0}" == "1" ]]; then
    echo "browser: INTAKE_REQUIRE_BROWSER=1, failing" >&2
    exit 1
  fi
  exit 0
}

npm_ok() {
  [[ -f "$DIR/node_modules/playwright-core/package.json" && -f "$DIR/node_modules/axe-core/axe.min.js" ]] &&
    cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json.installed"
}

cmd_install() {
  if [[ ! -x "$CHROMIUM" ]]; then
    command -v apt-get >/dev/null 2>&1 || missing "no $CHROMIUM and no apt-get"
    echo "browser: installing Debian's chromium" >&2
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
      command -v sudo >/dev/null 2>&1 || missing "not root and no sudo to install chromium"
      sudo=(sudo -n)
    fi
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2 ||
      { "${sudo[@]}" apt-get update >&2 &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2; }; }; then
      missing "apt-get install chromium failed"
    fi
  fi
  command -v node >/dev/null 2>&1 || missing "node is not installed"
  command -v npm >/dev/null 2>&1 || missing "npm is not installed"
  if ! npm_ok; then
    echo "browser: npm ci in $DIR" >&2
    # playwright-core never downloads a browser; the tests launch /usr/bin/chromium.
    (cd "$DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2) ||
      missing "npm ci in tests/browser failed"
    cp "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json.installed"
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  status) [[ -x "$CHROMIUM" ]] && npm_ok ;;
  *)
    echo "usage: $0 install|status" >&2
    exit 2
    ;;
esac
