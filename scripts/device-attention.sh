#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from binaries built here and carried in
# .device/ (scripts/stage-device.sh): the GPU tests, the C++ benchmark and, with
# --torch, the PyTorch comparison. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
what=${1:-all}
if [[ $what == all || $what == tests ]]; then
  timeout 300 .device/ldqa_gpu_tests --durations yes 2>&1 | tail -n 60 | tee "$out/gpu_tests.log"
  echo "gpu tests exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests.log"
fi
if [[ $what == all || $what == bench ]]; then
  timeout 200 .device/ldqa_attention_bench --device cuda --batch 1,8 --n 1024,4096,16384,65536 --reps 30 \
    2>&1 | tee "$out/bench_cpp.md"
fi
if [[ $what == all || $what == torch ]]; then
  PYTHONUNBUFFERED=1 timeout 420 python3 bench/attention_torch.py --lib .device/libldqa_attention_capi.so \
    --json "$out/bench_torch.json" 2>&1 | tee "$out/bench_torch.md"
fi
