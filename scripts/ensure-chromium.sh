#!/usr/bin/env bash
# Headless Chromium for the report's render test (tests/test_report.py): nothing to do when it
# is on PATH; else, on a Debian-like machine as root, install Debian's chromium package.
# Never fatal: without it that one test skips and says so.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Chromium not found: installing Debian's chromium package (for the report render test)"
  apt-get update -q >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 && exit 0
fi
echo "warning: Chromium unavailable; the report render test skips"
exit 0
