#!/bin/sh
# Install Debian's Chromium for the dashboard's browser tests (tests/dashboard), which drive it
# with Playwright. Playwright's own browser download is not used (it needs network access
# beyond the package registries). Idempotent: returns at once when Chromium is there.
#
#   CHROMIUM=/path/to/chromium sh scripts/install-chromium.sh   # use another binary
set -eu

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $CHROMIUM is missing and this is not a Debian-like system (no apt-get);" \
        "install Chromium and set CHROMIUM=/path/to/it (SHIPYARD_CHROMIUM for pytest)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "error: $CHROMIUM is missing; install it as root: apt-get install -y chromium fonts-liberation" >&2
        exit 1
    fi
fi
echo "installing Debian's chromium for the dashboard's browser tests..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-liberation: readable text in the screenshots (a Recommends of chromium, kept explicit).
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
"$CHROMIUM" --version
