#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
# torch is installed *first* and pinned to the CPU wheel (torch==2.13.0), so that pip never
# resolves torch through another package and pulls several GB of CUDA wheels. On a machine with
# a GPU, install the torch build you want into .venv before running this script (or set
# DISSAM_TORCH_SPEC, e.g. DISSAM_TORCH_SPEC="torch==2.13.0" with your index URL configured).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${DISSAM_TORCH_SPEC:-torch==2.13.0}
EXTRAS=${DISSAM_EXTRAS:-test}  # e.g. DISSAM_EXTRAS=test,app,browser-test (what .ci/run uses)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.dissam-setup
want=$( (cat pyproject.toml constraints.txt; echo "$EXTRAS") | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import dissam, torch" 2>/dev/null; then
  exit 0
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing $TORCH_SPEC (CPU wheel) first" >&2
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
echo "setup: installing dissam and its dependencies into .venv" >&2
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
echo "$want" > "$stamp"
