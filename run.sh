#!/usr/bin/env bash
# Install into .venv and start CYP-Registry; without CYP_MONGO_URI it runs an embedded SecantusDB.
# `./run.sh cluster start|stop ...` runs several nodes behind nginx instead (runtime/cluster.py).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -qq --disable-pip-version-check -r requirements.txt
if [ "${1:-}" = cluster ]; then
  shift
  exec .venv/bin/python -m runtime.cluster "$@"
fi
exec .venv/bin/python server.py "$@"
