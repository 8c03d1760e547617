#!/usr/bin/env bash
# Beaver-Vault next to etcd, one command (see bench/compare_etcd.py for what it runs).
#   bench/compare_etcd.sh [--seconds 3] [--clients 1,16,64] [--out bench/results]
# Installs Debian's etcd-server if missing, and matplotlib (the optional "bench" extra) if it can.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run scripts/setup-env.sh first" >&2; exit 2; }
if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y etcd-server; else sudo apt-get install -y etcd-server; fi
fi
if ! "$PY" -c "import matplotlib" 2>/dev/null; then
  .venv/bin/pip install -q -e '.[bench]' >/dev/null 2>&1 || echo "note: matplotlib is not installable here: no chart" >&2
fi
exec "$PY" bench/compare_etcd.py "$@"
