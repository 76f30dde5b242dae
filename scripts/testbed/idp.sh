#!/usr/bin/env bash
# The OAuth 2.0 / OpenID Connect test server: panva's oidc-provider (npm) on Node.
#
#   bash scripts/testbed/idp.sh install   # npm install into .testbed/idp (skipped when present)
#   bash scripts/testbed/idp.sh start     # run the server in the foreground (prints one JSON line)
#   bash scripts/testbed/idp.sh status    # exit 0 when installed
#
# Tests start the server themselves (intake_testkit::idp::Idp::start), one per test, on a free
# 127.0.0.1 port. A machine without node/npm only gets a message, unless INTAKE_REQUIRE_IDP=1.
set -euo pipefail

src="${BASH_SOURCE[0]}"
[[ "$src" == */* ]] || src="./$src"
ROOT="$(cd "${src%/*}/../.." && pwd)"
VERSION="9.13.3"
PREFIX="$ROOT/.testbed/idp"
SERVER="$ROOT/scripts/testbed/idp/server.mjs"

missing() {
  echo "idp: $1; tests that need the OAuth test server will be skipped" >&2
  if [[ "${INTAKE_REQUIRE_IDP:-0}" == "1" ]]; then
    echo "idp: INTAKE_REQUIRE_IDP=1, failing" >&2
    exit 1
  fi
  exit 0
}

installed_version() {
  local pj="$PREFIX/node_modules/oidc-provider/package.json"
  [[ -f "$pj" ]] || return 0
  sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$pj" | head -n1
}

cmd_install() {
  command -v node >/dev/null 2>&1 || missing "node is not installed"
  command -v npm >/dev/null 2>&1 || missing "npm is not installed"
  if [[ "$(installed_version)" == "$VERSION" ]]; then
    return 0
  fi
  echo "idp: installing oidc-provider@$VERSION into $PREFIX" >&2
  mkdir -p "$PREFIX"
  # A package.json of our own keeps npm from walking up to some other project.
  [[ -f "$PREFIX/package.json" ]] ||
    printf '{\n  "name": "intake-testbed-idp",\n  "private": true\n}\n' >"$PREFIX/package.json"
  if ! npm install --no-audit --no-fund --save-exact --loglevel=error \
    --prefix "$PREFIX" "oidc-provider@$VERSION" >&2; then
    missing "npm install oidc-provider@$VERSION failed"
  fi
  [[ "$(installed_version)" == "$VERSION" ]] || missing "oidc-provider@$VERSION did not install"
}

case "${1:-}" in
  install) cmd_install ;;
  status)
    [[ "$(installed_version)" == "$VERSION" ]] && command -v node >/dev/null 2>&1
    ;;
  start)
    shift
    [[ "$(installed_version)" == "$VERSION" ]] || cmd_install
    export IDP_MODULES="$PREFIX/node_modules"
    exec node "$SERVER" "$@"
    ;;
  *)
    echo "usage: $0 install|status|start [port]" >&2
    exit 2
    ;;
esac
