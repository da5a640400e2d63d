#!/bin/sh
# Make sure Debian's chromium is present for the status-page browser test.
# Installs it with apt when running as root; otherwise explains how and exits 0, so that
# the test itself decides (it skips locally, and fails when CI is set).
set -eu
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: installing chromium with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    exit 0
fi
echo "ensure_chromium: $CHROMIUM is missing; install it with: sudo apt-get install -y chromium" >&2
exit 0
