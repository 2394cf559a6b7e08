#!/usr/bin/env bash
# Send one request body to a model: a JSON object or array, or plain text.
#   scripts/predict.sh NAME [FILE|-] [--version V]   e.g. echo '{"title": "Jazz night"}' | scripts/predict.sh events
set -euo pipefail
source "$(dirname "$0")/_python.sh"
if [ $# -lt 1 ]; then echo "usage: $0 NAME [FILE|-]" >&2; exit 2; fi
exec "$PY" -m serving.tsctl predict "$@"
