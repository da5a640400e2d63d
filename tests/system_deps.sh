#!/bin/sh
# System packages some tests need: Debian's chromium (status page browser test),
# systemd-analyze (unit verification), promtool from Debian's prometheus package (alert
# rule unit tests) and Debian's postgresql (PostgreSQL store tests start a private cluster
# with its initdb/pg_ctl when no server answers on 127.0.0.1:5432 and WATCHER_TEST_PG_DSN is
# unset). Installed with apt when missing and running as root; otherwise says how and exits
# 0, so the tests decide (most skip locally and fail when CI is set; the promtool tests always
# fail unless WATCHER_SKIP_PROMTOOL=1 opts out; PostgreSQL tests fail unless
# WATCHER_TEST_SKIP_PG=1 opts out).
#
# Arguments restrict the check to those packages (tests/pg.py runs `system_deps.sh postgresql`).
set -eu
want="${*:-chromium systemd prometheus postgresql}"
has() { case " $want " in *" $1 "*) return 0 ;; esac; return 1; }
pg_needed() {
    # A usable server or Debian's binaries are enough; so is an explicit DSN or opt-out.
    [ -n "${WATCHER_TEST_PG_DSN:-}" ] && return 1
    [ "${WATCHER_TEST_SKIP_PG:-0}" != "0" ] && return 1
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 1
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
        return 1
    fi
    return 0
}
missing=""
has chromium && { [ -x /usr/bin/chromium ] || missing="$missing chromium"; }
has systemd && { command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"; }
has prometheus && { command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"; }
has postgresql && { pg_needed && missing="$missing postgresql"; }
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "system_deps: installing$missing with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    exit 0
fi
echo "system_deps: missing$missing; install with: sudo apt-get install -y$missing" >&2
exit 0
