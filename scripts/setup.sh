#!/usr/bin/env bash
# Create .venv and install tunelab with its pinned stack. Safe to run again.
# torch comes from constraints.txt as the 2.13.0 CPU build: no CUDA packages are pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: tunelab needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
