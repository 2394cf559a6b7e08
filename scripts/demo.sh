#!/usr/bin/env bash
# The whole path on the bundled (synthetic) sample events: set up .venv, train with the
# embedded base model, build the archive, start TorchServe, register the model through
# the management API and ask for one prediction with curl.
#   scripts/demo.sh                 (RUN=artifacts/demo NAME=events; RETRAIN=1 to train again)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUN="${RUN:-artifacts/demo}"
NAME="${NAME:-events}"
started=$SECONDS

scripts/setup.sh
PY=.venv/bin/python

if [ -f "$RUN/hierarchy.json" ] && [ -z "${RETRAIN:-}" ]; then
  echo "== reusing the trained run in $RUN (RETRAIN=1 to train again)"
else
  echo "== training on training/sample_events.csv (synthetic events) into $RUN"
  $PY -m training.train --data training/sample_events.csv --output "$RUN" --overwrite
fi

STORE="${MODEL_STORE:-model_store}"  # the server's store (serve.sh reads MODEL_STORE too)
echo "== building $STORE/$NAME.mar"
scripts/build.sh --run "$RUN" --name "$NAME" --force --model-store "$STORE"

echo "== starting TorchServe (config.properties)"
scripts/serve.sh start

echo "== registering $NAME through the management API"
scripts/manage.sh unregister "$NAME" >/dev/null 2>&1 || true
scripts/manage.sh register "$NAME.mar"

# curl reads the key from a 0600 header file: a key on a command line is visible to every local user.
# --noproxy '*': curl honours http_proxy, and the key must never leave this machine.
HEADER="$(scripts/manage.sh header inference)"
URL="$(scripts/manage.sh address inference)/predictions/$NAME"
BODY='{"title": "Late-night jazz at the Blue Room", "description": "A quartet plays standards and bebop until 1am. Tickets at the door.", "top_k": 3}'
echo "== curl --noproxy '*' -H @$HEADER -H 'Content-Type: application/json' $URL -d '$BODY'"
curl -sS --noproxy '*' -H "@$HEADER" -H "Content-Type: application/json" "$URL" -d "$BODY"
echo
echo "== done in $((SECONDS - started))s. Report: $RUN/report.md"
echo "   try it in a browser: scripts/serve.sh page (http://127.0.0.1:8090/, key: scripts/manage.sh key inference)"
echo "   more: scripts/predict.sh $NAME FILE | scripts/manage.sh list | stop the server: scripts/serve.sh stop"
