#!/usr/bin/env bash
# The system Chromium for the browser tests (tests/pagecheck.py: Playwright drives
# /usr/bin/chromium, no browser download): nothing to do when it is there; else, on a
# Debian-like machine as root, install Debian's chromium package (which puts it there).
# Never fatal: without it the browser tests skip and say so.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Chromium not found: installing Debian's chromium package (for the browser tests)"
  apt-get update -q >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 && exit 0
fi
echo "warning: Chromium unavailable; the browser tests skip"
exit 0
