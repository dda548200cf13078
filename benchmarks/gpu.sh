#!/usr/bin/env bash
# GPU figures of issue 17 in one call, for a lent machine with one NVIDIA GPU and no network.
#
#   bash benchmarks/gpu.sh OUT [WHEELS] [DATA] [STEP...]
#
# Run from the repository root. WHEELS: a folder of wheels for the packages that machine's
# Python lacks (installed into /tmp/site, no index; `bash benchmarks/gpu_wheels.sh .whl` fetches
# them here); DATA: a folder holding
# CMU-1-Small-Region.svs (and dsb2018-dev/, for the shipped U-Net's GPU test), copied to
# ../shared/data where the tests and benchmarks look. STEPs (default: all, in this order):
#   tests              the gpu-marked tests
#   pipeline-unet      4096² and 8192² CMU-1 mosaics end to end with --gpu, default U-Net
#   pipeline-hovernet  4096² with --gpu, HoVer-Net fast (seeded random weights in the official
#                      format: the released ones cannot be had here)
#   pipeline-unet-t1024  8192² with --gpu on 1024 px tiles (more tiles for the CPU workers)
#   models             network throughput through predict_image, GPU batch 8 and 32
#   forward            the network alone vs the engine's per-batch step, batch 8 / 32 / 128
#   timeline-unet      where the 8192² --gpu run's wall time goes (1024 px tiles)
#   timeline-hovernet  the same for HoVer-Net fast on 4096²
#   timeline-unet4     timeline-unet with 4 forward tasks at once on the GPU worker
#   forward-cudnn      forward with cuDNN's per-shape algorithm timing (cudnn.benchmark)
#   pipeline-cpu       8192² U-Net on the machine's CPU workers alone, for comparison
# Every step has its own time limit and the script goes on after a failed one; JSON lines go
# to OUT/results.jsonl (and to the console), logs to OUT/<step>.log.
set -u
out=${1:?usage: benchmarks/gpu.sh OUT [WHEELS] [DATA] [STEP...]}
wheels=${2:-}
data=${3:-}
shift $(($# < 3 ? $# : 3))
steps=${*:-tests pipeline-unet pipeline-hovernet pipeline-unet-t1024 models forward pipeline-cpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
if [ -n "$data" ]; then
    mkdir -p ../shared/data/slides ../shared/data/nuclei
    cp "$data"/CMU-1-Small-Region.svs ../shared/data/slides/
    [ -d "$data"/dsb2018-dev ] && cp -r "$data"/dsb2018-dev ../shared/data/nuclei/
fi
cores=$(nproc)
cpu_workers=$((cores - 1))
ckpt=/tmp/hovernet_fast_seed0.tar

step() { # name, seconds, command...: run it, log it, say how it ended
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    grep -h '^{' "$out/$name.log" | tee -a "$out/results.jsonl"
    echo "== $name: rc=$rc in $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || tail -5 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, nucscale.cli; print('torch', torch.__version__, torch.cuda.is_available())"
python3 benchmarks/mosaic.py --size 4096,8192 --out mosaics >"$out/mosaics.log" 2>&1
python3 - <<PY >"$out/checkpoint.log" 2>&1
import torch
from nucscale.models.hovernet import HoVerNetModule
torch.manual_seed(0)
state = {f"module.{k}": v for k, v in HoVerNetModule("fast", 6).state_dict().items()}
torch.save({"desc": state, "epoch": 0}, "$ckpt")
PY

for s in $steps; do
    case $s in
    tests) step tests 90 python3 -m pytest -m gpu -q -p no:cacheprovider tests/infer/test_engine_gpu.py ;;
    pipeline-unet) step "$s" 150 python3 benchmarks/pipeline.py --gpu --sizes 4096,8192 \
        --workers "$cpu_workers" --models unet ;;
    pipeline-hovernet) step "$s" 150 python3 benchmarks/pipeline.py --gpu --sizes 4096 \
        --workers "$cpu_workers" --models hovernet --weights "$ckpt" ;;
    pipeline-unet-t1024) step "$s" 90 python3 benchmarks/pipeline.py --gpu --sizes 8192 \
        --workers "$cpu_workers" --models unet --tile 1024 ;;
    models)
        step models-b8 60 python3 benchmarks/models.py --size 2048 --models unet,hovernet-fast --batch 8
        step models-b32 60 python3 benchmarks/models.py --size 2048 --models unet,hovernet-fast --batch 32 ;;
    forward) step "$s" 60 python3 benchmarks/models.py --models unet,hovernet-fast \
        --forward-batches 8,32,128 ;;
    timeline-unet) step "$s" 90 python3 benchmarks/timeline.py --gpu --size 8192 --tile 1024 \
        --workers "$cpu_workers" ;;
    timeline-hovernet) step "$s" 120 python3 benchmarks/timeline.py --gpu --size 4096 \
        --workers "$cpu_workers" --model hovernet --weights "$ckpt" ;;
    timeline-unet4) step "$s" 90 python3 benchmarks/timeline.py --gpu --size 8192 --tile 1024 \
        --workers "$cpu_workers" --gpu-tasks 4 ;;
    forward-cudnn) step "$s" 60 python3 benchmarks/models.py --models hovernet-fast,unet \
        --forward-batches 8,32 --cudnn-benchmark ;;
    pipeline-cpu) step "$s" 100 python3 benchmarks/pipeline.py --sizes 8192 --workers "$cores" \
        --models unet ;;
    *) echo "unknown step $s" ;;
    esac
done
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv
