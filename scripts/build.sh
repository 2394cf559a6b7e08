#!/usr/bin/env bash
# Package a run directory into TorchServe model archives (archives/build.py; --help for every option).
#   scripts/build.sh --run artifacts/demo --name events [--force] [--quantize int8] [--kserve-layout OUT]
set -euo pipefail
source "$(dirname "$0")/_python.sh"
exec "$PY" -m archives.build "$@"
