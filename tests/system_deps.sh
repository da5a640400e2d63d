#!/bin/sh
# System packages some tests need: Debian's chromium (status page browser test),
# systemd-analyze (unit verification) and promtool from Debian's prometheus package (alert
# rule unit tests). Installed with apt when missing and running as root; otherwise says how
# and exits 0, so the tests decide (most skip locally and fail when CI is set; the promtool
# tests always fail unless WATCHER_SKIP_PROMTOOL=1 opts out).
set -eu
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "system_deps: installing$missing with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    exit 0
fi
echo "system_deps: missing$missing; install with: sudo apt-get install -y$missing" >&2
exit 0
