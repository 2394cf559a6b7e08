#!/usr/bin/env bash
# Start, stop or check a model server: TorchServe with config.properties (default), or KServe's.
#   scripts/serve.sh start [--models NAME.mar,...] [--no-restore] | stop | status
#   scripts/serve.sh start --server kserve --run RUN|NAME.mar|LAYOUT --name NAME [--port 8085]
#   scripts/serve.sh status --server kserve
#   scripts/serve.sh page [--port 8090]   the demo page (web/) on loopback, in the foreground
# stop stops whichever of the two is running (--server picks one); TorchServe's stop remembers
# the registered models and the next start registers them again.
# Environment: TS_CONFIG (config file), SERVE_DIR (pid, logs, key_file.json; default .serve).
# The KServe server runs from .venv-kserve (scripts/setup.sh --kserve) when there is one.
set -euo pipefail
source "$(dirname "$0")/_python.sh"
KSERVE_PY="$ROOT/.venv-kserve/bin/python"
[ -x "$KSERVE_PY" ] || KSERVE_PY="$PY"
command="${1:-}"
[ $# -gt 0 ] && shift
server="" args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server="${2:-}"; shift 2 || { echo "--server needs torchserve or kserve" >&2; exit 2; } ;;
    --server=*) server="${1#--server=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$server" in ""|torchserve|kserve) ;; *) echo "--server must be torchserve or kserve, not $server" >&2; exit 2 ;; esac
case "$command" in
  start|status)
    if [ "$server" = kserve ]; then exec "$KSERVE_PY" -m serving.kservectl "$command" "${args[@]}"; fi
    exec "$PY" -m serving.tsctl "$command" "${args[@]}" ;;
  stop)
    if [ "$server" = kserve ] || { [ -z "$server" ] && [ -f "${SERVE_DIR:-$ROOT/.serve}/kserve.json" ]; }; then
      "$KSERVE_PY" -m serving.kservectl stop
    fi
    if [ "$server" != kserve ]; then exec "$PY" -m serving.tsctl stop "${args[@]}"; fi ;;
  page) exec "$PY" -m serving.demo_page "${args[@]}" ;;
  *) echo "usage: $0 start [--models NAME.mar,...] | start --server kserve --run RUN --name NAME [--port N]" \
          "| stop [--server kserve|torchserve] | status [--server ...] | page [--port N]" >&2; exit 2 ;;
esac
