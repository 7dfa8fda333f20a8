#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from binaries built here and carried in
# .device/ (scripts/stage-device.sh): the GPU tests, the C++ benchmark (forward and
# backward) and the PyTorch comparison. Logs go to $OUT.
#   bash scripts/device-attention.sh all|tests|bench|torch [bench/attention_torch.py arguments]
# e.g. bash scripts/device-attention.sh torch --shapes "H12 w256 g64" --n 16384 --scattered-n ""
# tests runs the GPU tests twice: on the default kernels, then with every head-dim-64
# forward and backward on Hopper's wgmma path (LDQA_ATTENTION_KERNEL=wgmma); bench times
# both paths. The environment's LDQA_ATTENTION_KERNEL applies to torch.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
what=${1:-all}
shift || true
if [[ $what == all || $what == tests ]]; then
  # The wgmma primitives on one tile first, in a process of their own: a fault there
  # would otherwise poison the CUDA context of every test after it.
  timeout 60 .device/ldqa_gpu_tests "wgmma: S = A B^T*" 2>&1 | tail -n 40 | tee "$out/gpu_tests_wgmma_probe.log"
  echo "wgmma probe exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests_wgmma_probe.log"
  timeout 300 .device/ldqa_gpu_tests --durations yes 2>&1 | tail -n 60 | tee "$out/gpu_tests.log"
  echo "gpu tests exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests.log"
  LDQA_ATTENTION_KERNEL=wgmma timeout 300 .device/ldqa_gpu_tests "~[model_gpu]" 2>&1 | tail -n 60 |
    tee "$out/gpu_tests_wgmma.log"
  echo "gpu tests (wgmma forward) exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests_wgmma.log"
fi
if [[ $what == all || $what == bench ]]; then
  for shape in "--heads 12 --window 256 --globals 64" "--heads 8 --window 128 --globals 48" \
    "--heads 6 --window 128 --globals 48"; do
    for pass in forward backward; do
      # shellcheck disable=SC2086 # the shape is several arguments
      timeout 100 .device/ldqa_attention_bench --device cuda --pass $pass --batch 1,8 --n 4096,16384,65536 --reps 30 $shape
    done
    for pass in forward backward; do  # the same on the wgmma path (the device column says which ran)
      # shellcheck disable=SC2086
      LDQA_ATTENTION_KERNEL=wgmma timeout 100 .device/ldqa_attention_bench --device cuda --pass $pass --batch 1,8 \
        --n 4096,16384,65536 --reps 30 $shape
    done
  done 2>&1 | tee "$out/bench_cpp.md"
  timeout 60 .device/ldqa_attention_bench --device cuda --batch 1,8 --n 16384 --reps 30 --globals-at scattered \
    2>&1 | tee -a "$out/bench_cpp.md"
fi
if [[ $what == all || $what == torch ]]; then
  # Further arguments narrow the run (FlexAttention compiles per shape, for minutes).
  PYTHONUNBUFFERED=1 timeout 540 python3 bench/attention_torch.py --lib .device/libldqa_attention_capi.so \
    --json "$out/bench_torch.json" "$@" 2>&1 | tee "$out/bench_torch.md"
fi
