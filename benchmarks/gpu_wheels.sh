#!/usr/bin/env bash
# Wheels for benchmarks/gpu.sh on a lent GPU machine whose Python (3.12, torch preinstalled, no
# network) lacks nucscale's pipeline dependencies: downloads, for x86-64 manylinux and
# CPython 3.12, the versions this checkout's .venv has of each package below (what importing
# the CLI, the pipeline and the local cluster needs beyond that machine's own packages; DuckDB
# and the DICOM codecs are left out: the GPU steps do not query or read DICOM).
#
#   bash benchmarks/gpu_wheels.sh [DIR]     # default .whl (ignore it: echo /.whl/ >> .git/info/exclude)
set -euo pipefail
dir=${1:-.whl}
names="dask distributed donfig google-crc32c imagecodecs locket partd numcodecs openslide-bin
openslide-python pydicom shapely tblib tornado zarr zict dask-jobqueue"
pins=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | python3 -c "
import re, sys
want = set(sys.argv[1].split())
for line in sys.stdin:
    name, _, version = line.strip().partition('==')
    if re.sub(r'[._]', '-', name.lower()) in want:
        print(f'{name}=={version}')
" "$names")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" $pins
du -sh "$dir"
