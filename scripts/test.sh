#!/usr/bin/env bash
# Set up .venv and .venv-kserve with the test tools (first run only), then run the whole test
# suite: unit tests, a tiny training run, archives, a real TorchServe and KServe's model server
# on loopback.
#   scripts/test.sh [pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --dev
scripts/setup.sh --kserve
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
# The repository root importable by the tests and by the entry points they start (python -m ...).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Two passes: KServe's model server has its own environment (requirements-kserve.txt says
# why); tests/conftest.py collects its tests in .venv-kserve and every other test in .venv.
# Exit 5 (nothing collected, e.g. a path that belongs to the other pass) counts as success.
status=0
.venv/bin/python -m pytest -ra "$@" || status=$?
kserve_status=0
.venv-kserve/bin/python -m pytest -ra "$@" || kserve_status=$?
[ "$status" -eq 5 ] && [ "$kserve_status" -ne 5 ] && status=0
[ "$kserve_status" -eq 5 ] && [ "$status" -ne 5 ] && kserve_status=0
[ "$status" -ne 0 ] && exit "$status"
exit "$kserve_status"
