#!/usr/bin/env bash
# One command to set up nucscale on a fresh machine: a virtual environment in .venv with the
# CPU build of torch 2.13 installed first (so nothing pulls a multi-GB CUDA build), then the
# package with its test tools. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
python -c "import nucscale, torch, openslide; print('nucscale', nucscale.__version__, '| torch', torch.__version__, '| openslide', openslide.__library_version__)"
