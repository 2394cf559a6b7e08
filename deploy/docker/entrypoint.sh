#!/bin/sh
# Container entrypoint: TorchServe (SERVER=torchserve) or KServe's Python model server
# (SERVER=kserve, an image built with that build argument) in the foreground from a KServe-style layout.
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
# The model server to start: the one the image was built for (its SERVER variable).
SERVER="${SERVER:-torchserve}"
case "$SERVER" in
    torchserve|kserve) ;;
    *) echo "entrypoint: SERVER=$SERVER is not a model server here (torchserve or kserve)" >&2; exit 2 ;;
esac

# Either server's per-shape kernel caches bounded (handlers/kernel_caches.py, CACHE_ENV) and
# glibc's mmap threshold fixed (serving/server_env.py, ALLOCATOR_ENV).
export ONEDNN_PRIMITIVE_CACHE_CAPACITY="${ONEDNN_PRIMITIVE_CACHE_CAPACITY:-1024}" LRU_CACHE_CAPACITY="${LRU_CACHE_CAPACITY:-1024}"
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-16777216}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-33554432}"

if [ "$SERVER" = kserve ]; then
    # serving/kserve_server.py (on the image's sys.path) on HTTP_PORT (default 8085, TorchServe's
    # inference port in the image), serving the layout's one archive as MODEL_NAME (default: its name).
    # It is this process from here on (exec): SIGTERM reaches uvicorn, which stops taking
    # connections, answers the requests it holds (KServe's grace period), then exits.
    mar="" count=0
    for f in "$MODEL_STORE"/*.mar; do
        if [ -f "$f" ]; then mar="$f" count=$((count + 1)); fi
    done
    if [ "$count" -ne 1 ]; then
        echo "entrypoint: $MODEL_STORE holds $count archives (*.mar); the KServe server serves one (set MODEL_BASE)" >&2
        exit 2
    fi
    MODEL_NAME="${MODEL_NAME:-$(basename "$mar" .mar)}"
    mkdir -p "$SERVE_DIR/tmp"
    chmod 700 "$SERVE_DIR"
    cd "$SERVE_DIR"
    export TMPDIR="$SERVE_DIR/tmp" HF_HUB_OFFLINE=1 HF_HOME="$SERVE_DIR/hf" XDG_CACHE_HOME="$SERVE_DIR/cache"
    umask 077
    exec "${PYTHON:-python3}" -m serving.kserve_server --model-dir "$mar" --name "$MODEL_NAME" \
        --host "${HOST:-0.0.0.0}" --http-port "${HTTP_PORT:-8085}" "$@"
fi

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
