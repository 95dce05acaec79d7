#!/usr/bin/env bash
# The project's test command (README): set up if needed, then the default (fast) test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# the suite covers the app, its browser test, the ONNX parity tests and the Ray engine (on a local 2-CPU
# Ray), so it installs their extras too
export DISSAM_EXTRAS=${DISSAM_EXTRAS:-test,app,browser-test,onnx,ray}
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
