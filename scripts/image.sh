#!/usr/bin/env bash
# The serving image (deploy/docker/Dockerfile): build it and run it, with docker or podman.
#
#   scripts/image.sh build [--server torchserve|kserve] [--layout DIR] [--base IMAGE] [--tag TAG]
#   scripts/image.sh run [--tag TAG] [--port 8085] [--metrics-port 8082] [--name NAME] [-- ENGINE-RUN-ARGS...]
#
# build: --server kserve builds the image of KServe's Python model server (serving/kserve_server.py,
#   requirements-kserve-serve.txt: no Java, no TorchServe; default tag localhost/event-taxonomy-kserve:1.0)
#   instead of TorchServe's; both serve the same layout on the same port. DIR is a layout written by `scripts/build.sh --run RUN --name events --kserve-layout DIR`
#   (config/config.properties and model-store/NAME.mar; default deploy/layout). The server's
#   serve-only wheels are downloaded once into the cache with pip on this machine;
#   the build installs from them alone, so it needs neither PyPI nor PyTorch's index. The torch
#   wheel must be a CPU build (put one in PIP_FIND_LINKS, or download it with
#   `pip download --index-url https://download.pytorch.org/whl/cpu torch==X -d CACHE/wheels`).
#   The base is IMAGE when given; else the Dockerfile's pinned python:3.11-slim-bookworm when
#   it is here or a registry answers; else a Debian bookworm base made here with mmdebstrap
#   from Debian's packages (localhost/debian:bookworm).
# run: serves on 127.0.0.1:PORT (inference: /predictions, KServe v1 and v2) and the metrics on
#   127.0.0.1:METRICS-PORT (the KServe server's: on PORT, /metrics), with a read-only root
#   filesystem; the server writes only in a tmpfs at /tmp. Ctrl-C or SIGTERM drains the requests
#   in flight, then stops. --tag localhost/event-taxonomy-kserve:1.0 runs the KServe server's image.
#
# Environment: ENGINE (docker or podman; default docker when its daemon answers, else podman),
# IMAGE_CACHE (default ~/.cache/event-taxonomy-image), OCI_RUNTIME (podman's runtime; default
# runc when installed).
set -euo pipefail
source "$(dirname "$0")/_python.sh"

TAG=""
CACHE="${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/event-taxonomy-image}"
LOCAL_BASE="localhost/debian:bookworm"
PUBLIC_BASE="$(sed -n 's/^ARG BASE=//p' "$ROOT/deploy/docker/Dockerfile")"

die() { echo "image.sh: $*" >&2; exit 2; }

# The engine and the flags it needs on this kind of host (podman: runc, bounded ulimits).
ENGINE_ARGS=()
RUN_ARGS=()
pick_engine() {
    local engine="${ENGINE:-}"
    if [ -z "$engine" ]; then
        if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker
        elif command -v podman >/dev/null 2>&1; then engine=podman
        else die "neither a docker daemon nor podman here (apt-get install podman runc)"; fi
    fi
    ENGINE="$engine"
    if [ "$ENGINE" = podman ]; then
        local runtime="${OCI_RUNTIME:-}"
        [ -z "$runtime" ] && command -v runc >/dev/null 2>&1 && runtime=runc
        [ -n "$runtime" ] && ENGINE_ARGS+=(--runtime "$runtime")
        RUN_ARGS+=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
    fi
}

have_image() { "$ENGINE" "${ENGINE_ARGS[@]}" image inspect "$1" >/dev/null 2>&1; }

local_debian_base() {
    if ! have_image "$LOCAL_BASE"; then
        command -v mmdebstrap >/dev/null 2>&1 || die "no registry answers and no mmdebstrap (apt-get install mmdebstrap)"
        echo "image.sh: making $LOCAL_BASE from Debian's packages (mmdebstrap)" >&2
        local tar
        tar="$(mktemp -d "${TMPDIR:-/tmp}/debian-base.XXXXXX")"
        mmdebstrap --quiet --variant=minbase bookworm "$tar/rootfs.tar" >&2
        "$ENGINE" "${ENGINE_ARGS[@]}" import "$tar/rootfs.tar" "$LOCAL_BASE" >/dev/null
        rm -rf "$tar"
    fi
    echo "$LOCAL_BASE"
}

pick_base() {
    if have_image "$PUBLIC_BASE" || timeout 60 "$ENGINE" "${ENGINE_ARGS[@]}" pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
        echo "$PUBLIC_BASE"
    else
        echo "image.sh: $PUBLIC_BASE is not here and no registry answers" >&2
        local_debian_base
    fi
}

# The server's requirements file as wheels (one folder each), downloaded again only when it changes.
wheelhouse() {
    local requirements="$1" wheels="$CACHE/wheels" stamp
    [ "$requirements" = requirements-serve.txt ] || wheels="$CACHE/wheels-${requirements%.txt}"
    stamp="$(sha256sum "$ROOT/$requirements" | cut -c1-16)"
    if [ "$(cat "$wheels/.stamp" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$wheels"
        mkdir -p "$wheels"
        echo "image.sh: downloading the serve-only wheels ($requirements) into $wheels" >&2
        "$PY" -m pip download --quiet --only-binary=:all: --dest "$wheels" -r "$ROOT/$requirements" >&2
        echo "$stamp" > "$wheels/.stamp"
    fi
    local torch
    torch="$(ls "$wheels" | grep '^torch-' || true)"
    case "$torch" in
        *+cpu*) ;;
        *) die "the torch wheel in $wheels is not a CPU build ($torch): see the header of scripts/image.sh" ;;
    esac
    echo "$wheels"
}

build() {
    local layout="$ROOT/deploy/layout" base="" server=torchserve requirements
    while [ $# -gt 0 ]; do
        case "$1" in
            --server) server="$2"; shift 2 ;;
            --layout) layout="$2"; shift 2 ;;
            --base) base="$2"; shift 2 ;;
            --tag) TAG="$2"; shift 2 ;;
            *) die "build: unknown argument $1" ;;
        esac
    done
    case "$server" in
        torchserve) requirements=requirements-serve.txt; [ -n "$TAG" ] || TAG="localhost/event-taxonomy:1.0" ;;
        kserve) requirements=requirements-kserve-serve.txt; [ -n "$TAG" ] || TAG="localhost/event-taxonomy-kserve:1.0" ;;
        *) die "build: --server is torchserve or kserve, not $server" ;;
    esac
    [ -f "$layout/config/config.properties" ] && ls "$layout"/model-store/*.mar >/dev/null 2>&1 \
        || die "no layout at $layout: write one with scripts/build.sh --run RUN --name events --kserve-layout $layout"
    pick_engine
    local started wheels
    started=$(date +%s)
    [ -n "$base" ] || base="$(pick_base)"
    wheels="$(wheelhouse "$requirements")"
    # The build context holds only what the Dockerfile copies, at the paths it names.
    mkdir -p "$CACHE"
    context="$(mktemp -d "$CACHE/context.XXXXXX")"
    trap 'rm -rf "$context"' EXIT
    mkdir -p "$context/deploy/docker"
    cp "$ROOT/$requirements" "$context/"
    cp -r "$ROOT/handlers" "$ROOT/serving" "$context/"
    find "$context/handlers" "$context/serving" -name __pycache__ -prune -exec rm -rf {} +
    cp "$ROOT/deploy/docker/Dockerfile" "$ROOT/deploy/docker/entrypoint.sh" "$ROOT/deploy/docker/healthcheck.py" \
        "$ROOT/deploy/docker/drain.py" "$context/deploy/docker/"
    cp -rL "$layout" "$context/deploy/layout"
    cp -al "$wheels" "$context/deploy/wheels" 2>/dev/null || cp -r "$wheels" "$context/deploy/wheels"
    local args=(build -f "$context/deploy/docker/Dockerfile" --build-arg "BASE=$base" --build-arg "SERVER=$server" -t "$TAG")
    if [ "$ENGINE" = podman ]; then args+=(--format docker --network host "${RUN_ARGS[@]}"); fi
    echo "image.sh: building $TAG ($server) on $base with $ENGINE" >&2
    "$ENGINE" "${ENGINE_ARGS[@]}" "${args[@]}" "$context"
    local size
    size="$("$ENGINE" "${ENGINE_ARGS[@]}" image inspect --format '{{.Size}}' "$TAG")"
    echo "image.sh: built $TAG ($server) on $base in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB"
}

run() {
    local port=8085 metrics=8082 name="event-taxonomy"
    while [ $# -gt 0 ]; do
        case "$1" in
            --tag) TAG="$2"; shift 2 ;;
            --port) port="$2"; shift 2 ;;
            --metrics-port) metrics="$2"; shift 2 ;;
            --name) name="$2"; shift 2 ;;
            --) shift; break ;;
            *) die "run: unknown argument $1" ;;
        esac
    done
    [ -n "$TAG" ] || TAG="localhost/event-taxonomy:1.0"
    pick_engine
    have_image "$TAG" || die "no image $TAG here: scripts/image.sh build first"
    exec "$ENGINE" "${ENGINE_ARGS[@]}" run --rm --name "$name" --read-only \
        --tmpfs /tmp:rw,nosuid,nodev,size=1g,mode=1777 \
        --cap-drop ALL --security-opt no-new-privileges "${RUN_ARGS[@]}" \
        -p "127.0.0.1:$port:8085" -p "127.0.0.1:$metrics:8082" --stop-timeout 70 "$@" "$TAG"
}

case "${1:-}" in
    build) shift; build "$@" ;;
    run) shift; run "$@" ;;
    *) sed -n '2,5p' "$0" >&2; exit 2 ;;
esac
