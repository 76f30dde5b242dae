#!/usr/bin/env bash
# Installs tinyproxy (Debian) for the HTTP CONNECT proxy tests (RC16). Idempotent and quick when
# installed. The tests start their own instance on 127.0.0.1 with a private config; the system
# service is never used (policy-rc.d keeps it from starting at install).
set -u
case "${1:-install}" in
  install)
    if command -v tinyproxy >/dev/null 2>&1; then exit 0; fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q tinyproxy >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q tinyproxy >/dev/null 2>&1 || {
        echo "tinyproxy: cannot install (apt-get failed); proxy tests will skip" >&2
        [[ "${INTAKE_REQUIRE_PROXY:-0}" == 1 ]] && exit 1
        exit 0
      }
    fi
    pkill -x tinyproxy >/dev/null 2>&1 || true   # a system instance started by the package, if any
    ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
