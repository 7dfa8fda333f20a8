#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool) from binaries carried in .device.tar.xz
# (scripts/stage-device.sh): the GPU tests, then the encoder benchmark, C++ against
# PyTorch eager and compiled with the same weights, in one run. Logs go to $OUT.
#   bash scripts/device-encoder.sh [tests|bench|all] [MODEL_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
what=${1:-all}
model=${2:-models/ldqa-small}
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
if [[ $what == all || $what == tests ]]; then
  timeout 150 .device/ldqa_gpu_tests --durations yes 2>&1 | tail -n 80 | tee "$out/gpu_tests.log"
  echo "gpu tests exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests.log"
fi
if [[ $what == all || $what == bench ]]; then
  timeout 90 .device/ldqa_encoder_bench --model "$model" --device cuda --n 4096,16384,65536,131072 --batch 1,8 \
    --reps 5 2>&1 | tee "$out/encoder_cpp.jsonl"
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/encoder_torch.py --model "$model" --device cuda \
    --n 4096,16384,65536 --batch 1,8 --impls eager 2>&1 | grep -v Warning | tee "$out/encoder_torch_eager.jsonl"
  PYTHONUNBUFFERED=1 timeout 180 python3 bench/encoder_torch.py --model "$model" --device cuda \
    --n 16384,4096 --batch 1,8 --impls compile 2>&1 | grep -v Warning | tee "$out/encoder_torch_compile.jsonl"
fi
