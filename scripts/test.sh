#!/usr/bin/env bash
# The project's test command (README): set up if needed, then the default (fast) test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
