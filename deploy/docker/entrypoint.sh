#!/bin/sh
# Container entrypoint: TorchServe in the foreground from a KServe-style layout.
#   MODEL_BASE (default /mnt/models) holds config/config.properties and model-store/*.mar,
#   the folder archives/build.py --kserve-layout writes (the image bakes one in).
# Every path can be overridden by the environment, so this runs outside a container too
# (tests/test_deploy.py does). SIGTERM or SIGINT stops TorchServe cleanly: the JVM gets its
# own SIGTERM through torchserve --stop, since signalling the Python launcher alone would
# leave Java running.
set -eu

MODEL_BASE="${MODEL_BASE:-/mnt/models}"
CONFIG_PATH="${CONFIG_PATH:-$MODEL_BASE/config/config.properties}"
MODEL_STORE="${MODEL_STORE:-$MODEL_BASE/model-store}"
SERVE_DIR="${SERVE_DIR:-${HOME:-/tmp}/serve}"
TORCHSERVE="${TORCHSERVE:-torchserve}"

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
export LOG_LOCATION="${LOG_LOCATION:-$SERVE_DIR/logs}" METRICS_LOCATION="${METRICS_LOCATION:-$SERVE_DIR/logs}"
# Workers' per-shape kernel caches bounded (handlers/kernel_caches.py, CACHE_ENV).
export ONEDNN_PRIMITIVE_CACHE_CAPACITY="${ONEDNN_PRIMITIVE_CACHE_CAPACITY:-128}" LRU_CACHE_CAPACITY="${LRU_CACHE_CAPACITY:-128}"
# TorchServe would read TS_CONFIG_FILE before --ts-config.
unset TS_CONFIG_FILE
umask 077

"$TORCHSERVE" --foreground --model-store="$MODEL_STORE" --ts-config="$CONFIG_PATH" "$@" &
launcher=$!

stop() {
    trap - TERM INT
    "$TORCHSERVE" --stop >/dev/null 2>&1 || true
    wait "$launcher" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

status=0
wait "$launcher" || status=$?
exit "$status"
