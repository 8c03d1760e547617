#!/usr/bin/env bash
# Install the browser the UI tests drive: Debian's `chromium` (/usr/bin/chromium).
# Playwright is used with this system browser only: never run `playwright install`.
# Idempotent: does nothing when chromium is already installed. Needs root (CI runs as root).
set -euo pipefail

say() { printf 'install-browser: %s\n' "$*" >&2; }

if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" && [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    say "chromium is missing; run this script as root, or: sudo apt-get install -y chromium"
    exit 1
fi
say "installing Debian chromium (about a minute)"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
say "ready: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
