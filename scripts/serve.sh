#!/usr/bin/env bash
# Start, stop or check TorchServe with config.properties.
#   scripts/serve.sh start [--models NAME.mar,...] [--no-restore] | stop | status
#   scripts/serve.sh page [--port 8090]   the demo page (web/) on loopback, in the foreground
# stop remembers the registered models; the next start registers them again.
# Environment: TS_CONFIG (config file), SERVE_DIR (pid, logs, key_file.json; default .serve).
set -euo pipefail
source "$(dirname "$0")/_python.sh"
case "${1:-}" in
  start|stop|status) exec "$PY" -m serving.tsctl "$@" ;;
  page) shift; exec "$PY" -m serving.demo_page "$@" ;;
  *) echo "usage: $0 start [--models NAME.mar,...] | stop | status | page [--port N]" >&2; exit 2 ;;
esac
