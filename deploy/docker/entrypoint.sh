#!/bin/sh
# Container entrypoint: TorchServe in the foreground from a KServe-style layout.
#   MODEL_BASE (default /mnt/models) holds config/config.properties and model-store/*.mar,
#   the folder archives/build.py --kserve-layout writes (the image bakes one in).
# Every path can be overridden by the environment, so this runs outside a container too
# (tests/test_deploy.py does). SIGTERM or SIGINT drains, then stops: drain.py waits (at most
# DRAIN_SECONDS, default 30) until every inference request TorchServe has taken is answered,
# since TorchServe's own shutdown resets open connections; then the JVM gets its SIGTERM
# through torchserve --stop, since signalling the Python launcher alone would leave Java running.
set -eu

MODEL_BASE="${MODEL_BASE:-/mnt/models}"
CONFIG_PATH="${CONFIG_PATH:-$MODEL_BASE/config/config.properties}"
MODEL_STORE="${MODEL_STORE:-$MODEL_BASE/model-store}"
SERVE_DIR="${SERVE_DIR:-${HOME:-/tmp}/serve}"
TORCHSERVE="${TORCHSERVE:-torchserve}"
# The model server to start. Only TorchServe is in this image; another server reading the
# same layout would be added here as another case.
SERVER="${SERVER:-torchserve}"
case "$SERVER" in
    torchserve) ;;
    *) echo "entrypoint: SERVER=$SERVER is not in this image (torchserve is)" >&2; exit 2 ;;
esac

if [ ! -f "$CONFIG_PATH" ]; then
    echo "entrypoint: no TorchServe config at $CONFIG_PATH (set MODEL_BASE or CONFIG_PATH)" >&2
    exit 2
fi
if ! ls "$MODEL_STORE"/*.mar >/dev/null 2>&1; then
    echo "entrypoint: no archive (*.mar) in $MODEL_STORE (set MODEL_BASE or MODEL_STORE)" >&2
    exit 2
fi

# Pid file, unpacked archives, logs and (with tokens on) key_file.json live in SERVE_DIR.
mkdir -p "$SERVE_DIR/tmp" "$SERVE_DIR/logs"
chmod 700 "$SERVE_DIR"
cd "$SERVE_DIR"
export TMPDIR="$SERVE_DIR/tmp" TEMP="$SERVE_DIR/tmp"
# Nothing is downloaded at serve time; any cache a library keeps goes under SERVE_DIR.
export HF_HUB_OFFLINE=1 HF_HOME="$SERVE_DIR/hf" XDG_CACHE_HOME="$SERVE_DIR/cache"
export LOG_LOCATION="${LOG_LOCATION:-$SERVE_DIR/logs}" METRICS_LOCATION="${METRICS_LOCATION:-$SERVE_DIR/logs}"
# TorchServe would read TS_CONFIG_FILE before --ts-config.
unset TS_CONFIG_FILE
umask 077

"$TORCHSERVE" --foreground --model-store="$MODEL_STORE" --ts-config="$CONFIG_PATH" "$@" &
launcher=$!

DRAIN="${DRAIN:-$(dirname "$0")/drain.py}"
stop() {
    trap - TERM INT
    python3 "$DRAIN" || true
    "$TORCHSERVE" --stop >/dev/null 2>&1 || true
    wait "$launcher" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

status=0
wait "$launcher" || status=$?
exit "$status"
