#!/usr/bin/env bash
# Installs microsocks (Debian) for the SOCKS5 proxy tests (RC16). Idempotent and quick when
# installed. The tests start their own instance on 127.0.0.1 with its own port and credentials;
# the package ships only the binary (no service), so nothing starts at install.
set -u
case "${1:-install}" in
  install)
    if command -v microsocks >/dev/null 2>&1; then exit 0; fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q microsocks >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q microsocks >/dev/null 2>&1 || {
        echo "microsocks: cannot install (apt-get failed); SOCKS5 proxy tests will skip" >&2
        [[ "${INTAKE_REQUIRE_SOCKS:-0}" == 1 ]] && exit 1
        exit 0
      }
    fi
    ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
