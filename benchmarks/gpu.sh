#!/usr/bin/env bash
# GPU figures of issue 17 in one call, for a lent machine with one NVIDIA GPU and no network.
#
#   bash benchmarks/gpu.sh OUT [WHEELS] [CMU1_SVS]
#
# Run from the repository root. WHEELS: a folder of wheels for the packages that machine's
# Python lacks (installed into /tmp/site, no index); CMU1_SVS: CMU-1-Small-Region.svs, copied to
# ../shared/data/slides where the benchmarks look for it. Every step has its own time limit and
# the script goes on after a failed one; JSON lines go to OUT/results.jsonl, logs to OUT/*.log.
# Steps: the GPU tests; network throughput (benchmarks/models.py, GPU batch 8 and 32); the
# 4096² and 8192² CMU-1 mosaics end to end with --gpu (default U-Net; HoVer-Net fast with
# seeded random weights in the official format, the released ones cannot be had here); the same
# U-Net run on 1024 px tiles (more tiles for the CPU workers), and on the machine's CPU workers
# alone, for comparison.
set -u
out=${1:?usage: benchmarks/gpu.sh OUT [WHEELS] [CMU1_SVS]}
wheels=${2:-}
svs=${3:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
if [ -n "$svs" ]; then
    mkdir -p ../shared/data/slides && cp "$svs" ../shared/data/slides/
fi
cores=$(nproc)
cpu_workers=$((cores - 1))

step() { # name, seconds, command...: run it, log it, say how it ended
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    grep -h '^{' "$out/$name.log" >>"$out/results.jsonl"
    echo "== $name: rc=$rc in $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || tail -5 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, nucscale.cli; print('torch', torch.__version__, torch.cuda.is_available())"

step tests 90 python3 -m pytest -m gpu -q -p no:cacheprovider tests/infer/test_engine_gpu.py
step mosaics 120 python3 benchmarks/mosaic.py --size 4096,8192 --out mosaics
step pipeline-unet 150 python3 benchmarks/pipeline.py --gpu --sizes 4096,8192 \
    --workers "$cpu_workers" --models unet
python3 - <<'EOF' >"$out/checkpoint.log" 2>&1
import torch
from nucscale.models.hovernet import HoVerNetModule
torch.manual_seed(0)
state = {f"module.{k}": v for k, v in HoVerNetModule("fast", 6).state_dict().items()}
torch.save({"desc": state, "epoch": 0}, "/tmp/hovernet_fast_seed0.tar")
EOF
step pipeline-hovernet 150 python3 benchmarks/pipeline.py --gpu --sizes 4096 \
    --workers "$cpu_workers" --models hovernet --weights /tmp/hovernet_fast_seed0.tar
step pipeline-unet-t1024 90 python3 benchmarks/pipeline.py --gpu --sizes 8192 \
    --workers "$cpu_workers" --models unet --tile 1024
step models-b8 60 python3 benchmarks/models.py --size 2048 --models unet,hovernet-fast --batch 8
step models-b32 60 python3 benchmarks/models.py --size 2048 --models unet,hovernet-fast --batch 32
step pipeline-cpu 100 python3 benchmarks/pipeline.py --sizes 8192 --workers "$cores" --models unet
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv
echo "results: $(wc -l <"$out/results.jsonl") JSON lines"
