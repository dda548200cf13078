#!/usr/bin/env bash
# One command to set up nucscale on a fresh machine: a virtual environment in .venv, torch 2.13
# first (the build you choose, so nothing pulls a multi-GB CUDA build by accident), then the
# package with its test tools. Re-running it is cheap.
#
#   bash scripts/setup.sh                 # CPU build of torch (the default)
#   NUCSCALE_TORCH=cuda NUCSCALE_TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#       bash scripts/setup.sh             # CUDA build, plus the gpu extra (dask-cuda)
#
# NUCSCALE_TORCH      cpu (default) or cuda: which torch build, checked after installing.
# NUCSCALE_TORCH_INDEX  the wheel index to take torch from (default: pip's own configuration).
#                     Plain PyPI's Linux torch wheel is the CUDA build: on such a machine, the
#                     CPU build comes from https://download.pytorch.org/whl/cpu.
# PYTHON              the interpreter to make the environment with (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=${NUCSCALE_TORCH:-cpu}
INDEX=${NUCSCALE_TORCH_INDEX:-}
case "$BUILD" in
    cpu|cuda) ;;
    *) echo "setup: NUCSCALE_TORCH must be cpu or cuda, not '$BUILD'" >&2; exit 2 ;;
esac
START=$SECONDS
step() { echo "setup: [$1/4] $2 (${3}; $((SECONDS - START)) s so far)"; }

step 1 "virtual environment .venv" "seconds"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip

step 2 "torch 2.13.0, $BUILD build${INDEX:+, from $INDEX}" "seconds from a local wheel, minutes to download"
python -m pip install --quiet "torch==2.13.0" ${INDEX:+--index-url "$INDEX"}
if ! python - "$BUILD" <<'PY'
import sys
import torch
want = sys.argv[1]
got = "cpu" if torch.version.cuda is None else "cuda"
if got != want:
    print(f"setup: torch {torch.__version__} is a {got} build, not the {want} build asked for "
          "(set NUCSCALE_TORCH_INDEX to an index that has it)", file=sys.stderr)
    sys.exit(1)
PY
then
    exit 1
fi

EXTRAS=test
[ "$BUILD" = cuda ] && EXTRAS=test,gpu
step 3 "nucscale and its dependencies [$EXTRAS], at the versions of deploy/requirements-lock.txt" "a minute or two on a fresh machine"
# the lock pins every runtime dependency to the versions the tests passed with, the same the
# worker images install (scripts/lock.py writes it)
python -m pip install --quiet -e ".[$EXTRAS]" -c deploy/requirements-lock.txt

step 4 "bytecode of the package, and a check" "seconds"
# an editable install leaves nucscale's bytecode unwritten, and where PYTHONDONTWRITEBYTECODE is
# set no import writes it: every process (the command, each worker's fork server) would compile
# the package again, 0.06 s of its start
python -m compileall -q nucscale >/dev/null
python -c "import nucscale, torch, openslide; print('setup: done: nucscale', nucscale.__version__, '| torch', torch.__version__, '(cuda ' + str(torch.version.cuda) + ')' if torch.version.cuda else '(cpu)', '| openslide', openslide.__library_version__)"
