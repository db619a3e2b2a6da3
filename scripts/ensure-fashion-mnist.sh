#!/usr/bin/env bash
# Make sure Fashion-MNIST is present: nothing to do when robustscope finds it; else,
# on a Debian-like machine as root, install Debian's dataset-fashion-mnist package
# (idx files in /usr/share/datasets/fashion-mnist); else try the verified download.
set -euo pipefail
PY=${1:-.venv/bin/python}

present() {
  "$PY" - <<'PYEOF'
import sys
from robustscope import data
status = {s.name: s for s in data.available()}["fashion-mnist"]
sys.exit(0 if status.present else 1)
PYEOF
}

if present; then exit 0; fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Fashion-MNIST not found: installing Debian's dataset-fashion-mnist package"
  apt-get update -q >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null \
    && present && exit 0
fi

echo "Fashion-MNIST not found: trying the official download (SHA-256 verified)"
if "$PY" -m robustscope datasets --download fashion-mnist >/dev/null; then exit 0; fi

echo "Could not obtain Fashion-MNIST. Install Debian's dataset-fashion-mnist package, or put" >&2
echo "the four idx files into \$ROBUSTSCOPE_DATA/fashion-mnist (see README: Data)." >&2
exit 1
