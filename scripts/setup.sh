#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
# torch is installed *first*, pinned (torch==2.13.0) and taken from PyTorch's CPU wheel index, so
# that pip never resolves torch through another package and pulls several GB of CUDA wheels. When
# that index cannot be reached (an offline mirror, a machine that only sees PyPI), the default index
# is used instead, with a message: on Linux that is the CUDA build unless your pip configuration
# provides a CPU wheel (as this project's CI machines do). On a machine with a GPU, install the
# torch build you want into .venv before running this script; it keeps an installed torch.
#   DISSAM_TORCH_SPEC   the requirement (default torch==2.13.0)
#   DISSAM_TORCH_INDEX  the CPU wheel index (default PyTorch's); "none" skips it
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${DISSAM_TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${DISSAM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
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
  if [ "$TORCH_INDEX" != "none" ] && .venv/bin/python -c \
      "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=10)" \
      "$TORCH_INDEX" 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC (CPU build) from $TORCH_INDEX first" >&2
    .venv/bin/python -m pip install -q --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple "$TORCH_SPEC"
  else
    echo "setup: $TORCH_INDEX cannot be reached; installing $TORCH_SPEC from the default index" \
      "(on Linux this is the CUDA build unless your pip configuration provides the CPU wheel)" >&2
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
  fi
  .venv/bin/python -c "import torch; print('setup: torch', torch.__version__, '(CUDA build)' if torch.version.cuda else '(CPU build)')" >&2
fi
echo "setup: installing dissam and its dependencies into .venv" >&2
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
echo "$want" > "$stamp"
