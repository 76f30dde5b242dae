#!/usr/bin/env bash
# Dovecot 2.3 (Debian) for Intake's IMAP/POP3 connector tests and its SMTP submission tests.
#
#   bash scripts/testbed/dovecot.sh install   # apt-get install the packages (quick when present)
#   bash scripts/testbed/dovecot.sh status    # exit 0 when installed
#
# Tests start their own server (intake_testkit::dovecot::Dovecot::start): `dovecot -F -c
# <tempdir>/dovecot.conf` on free 127.0.0.1 ports, all state under the temp dir. /etc/dovecot
# and the system service are never used: installing must not leave a system dovecot running on
# 143/993/110/995. Debian starts services from maintainer scripts through invoke-rc.d, which asks
# /usr/sbin/policy-rc.d; while installing we make sure that answers 101 ("forbidden") and put the
# original file back afterwards.
#
# A machine without apt only gets a message, unless INTAKE_REQUIRE_DOVECOT=1 (then exit 1).
set -euo pipefail

PACKAGES=(dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond)
POLICY=/usr/sbin/policy-rc.d

missing() {
  echo "dovecot: $1; tests that need the Dovecot test server will be skipped" >&2
  if [[ "${INTAKE_REQUIRE_DOVECOT:-0}" == "1" ]]; then
    echo "dovecot: INTAKE_REQUIRE_DOVECOT=1, failing" >&2
    exit 1
  fi
  exit 0
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

need_list() {
  local p
  for p in "${PACKAGES[@]}" "$@"; do
    pkg_installed "$p" || printf '%s\n' "$p"
  done
}

# Stops a system dovecot (the packaged service), never one a test started (those run with
# -c <tempdir>/dovecot.conf). Only the master process started from /etc/dovecot is touched.
stop_system_dovecot() {
  local pidfile=/run/dovecot/master.pid pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q dovecot &&
    ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '-c '; then
    echo "dovecot: stopping the system dovecot (pid $pid) that the package started" >&2
    kill "$pid" 2>/dev/null || true
  fi
}

cmd_install() {
  local need
  local extra=()
  command -v curl >/dev/null 2>&1 || extra+=(curl)
  command -v openssl >/dev/null 2>&1 || extra+=(openssl)
  need="$(need_list "${extra[@]}")"
  if [[ -z "$need" ]]; then
    command -v dovecot >/dev/null 2>&1 || [[ -x /usr/sbin/dovecot ]] || missing "dovecot is not on PATH"
    stop_system_dovecot
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || missing "apt-get is not available to install: $(echo $need)"
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      exec sudo -n env INTAKE_REQUIRE_DOVECOT="${INTAKE_REQUIRE_DOVECOT:-0}" bash "$0" install
    fi
    missing "not root (and no passwordless sudo) to install: $(echo $need)"
  fi

  # Keep the package from starting its service: a policy-rc.d that forbids everything.
  local backup="" created=0
  if [[ -e "$POLICY" ]]; then
    local rc=0
    "$POLICY" dovecot start >/dev/null 2>&1 || rc=$?
    if [[ "$rc" != 101 ]]; then
      backup="$(mktemp /tmp/policy-rc.d.intake.XXXXXX)"
      cp -p "$POLICY" "$backup"
      created=1
    fi
  else
    created=1
  fi
  restore_policy() {
    if [[ "$created" == 1 ]]; then
      if [[ -n "$backup" ]]; then
        cp -p "$backup" "$POLICY" && rm -f "$backup"
      else
        rm -f "$POLICY"
      fi
    fi
  }
  if [[ "$created" == 1 ]]; then
    trap restore_policy EXIT
    printf '#!/bin/sh\n# temporary, from intake scripts/testbed/dovecot.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
  fi

  echo "dovecot: installing $(echo $need) with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  local apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends)
  # shellcheck disable=SC2086
  if ! apt-get install "${apt_opts[@]}" $need >&2; then
    echo "dovecot: apt-get install failed; trying apt-get update first" >&2
    # shellcheck disable=SC2086
    if ! { apt-get update -q >&2 && apt-get install "${apt_opts[@]}" $need >&2; }; then
      restore_policy
      trap - EXIT
      missing "apt-get install $(echo $need) failed"
    fi
  fi
  restore_policy
  trap - EXIT
  stop_system_dovecot
  [[ -z "$(need_list)" ]] || missing "the packages did not install"
}

case "${1:-}" in
  install) cmd_install ;;
  status) [[ -z "$(need_list)" ]] ;;
  *)
    echo "usage: $0 install|status" >&2
    exit 2
    ;;
esac
