#!/usr/bin/env bash
# Set up .venv with the test tools (first run only), then run the whole test suite:
# unit tests, a tiny training run, archives, and a real TorchServe on loopback.
#   scripts/test.sh [pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --dev
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
# The repository root importable by the tests and by the entry points they start (python -m ...).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest -ra "$@"
