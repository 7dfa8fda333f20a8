#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool) from binaries carried in .device.tar.xz
# (scripts/stage-device.sh): the GPU tests, and the encoder benchmark, C++ against
# PyTorch eager and compiled with the same weights, in one run. Logs go to $OUT.
#   bash scripts/device-encoder.sh tests [MODEL_DIR]
#   bash scripts/device-encoder.sh warm  [MODEL_DIR]   # detached; may overlap other work
#   bash scripts/device-encoder.sh bench [MODEL_DIR]   # a later call, same machine
# PyTorch compiles per shape (FlexAttention's kernels; torch.compile's graph), which
# costs minutes: `warm` runs every shape once, untimed, in the background (timings
# there are meaningless, so it can share the GPU with training or the tests) to fill
# the inductor cache in /tmp; `bench` waits for it, then times every implementation.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
what=${1:-tests}
model=${2:-models/ldqa-small}
out=${OUT:-/tmp/out}
warm_log=/tmp/ldqa/warm.log
mkdir -p "$out" /tmp/ldqa
export PYTHONUNBUFFERED=1
torch_bench() {  # impl, then extra arguments
  python3 bench/encoder_torch.py --model "$model" --device cuda --n 4096,16384,65536 --batch 1,8 --impls "$@" 2>&1 |
    grep -v Warning
}
case $what in
  tests)
    timeout 250 .device/ldqa_gpu_tests --durations yes 2>&1 | tail -n 80 | tee "$out/gpu_tests.log"
    echo "gpu tests exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests.log"
    timeout 120 .device/ldqa_gpu_engine_tests 2>&1 | tail -n 20 | tee -a "$out/gpu_tests.log"
    echo "gpu engine tests exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_tests.log"
    ;;
  warm)
    setsid nohup bash -c "$(declare -f torch_bench); model=$model; torch_bench eager --reps 1; torch_bench compile --reps 1" \
      >"$warm_log" 2>&1 </dev/null &
    echo "warm-up started: $warm_log"
    ;;
  bench)
    while pgrep -f "torch_bench" >/dev/null; do sleep 5; done
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
    timeout 100 .device/ldqa_encoder_bench --model "$model" --device cuda --n 4096,16384,65536,131072 --batch 1,8 \
      --reps 5 2>&1 | tee "$out/encoder_cpp.jsonl"
    # Short passes, where launches rather than kernels can bound a pass: CUDA graphs on/off.
    for graphs in 1 0; do
      LDQA_CUDA_GRAPHS=$graphs timeout 60 .device/ldqa_encoder_bench --model "$model" --device cuda --n 512,2048 \
        --batch 1,8 --reps 20 2>&1 | sed "s/^{/{\"graphs_env\": $graphs, /" | tee -a "$out/encoder_cpp_graphs.jsonl"
    done
    timeout 200 bash -c "$(declare -f torch_bench); model=$model; torch_bench eager" | tee "$out/encoder_torch_eager.jsonl"
    timeout 250 bash -c "$(declare -f torch_bench); model=$model; torch_bench compile" | tee "$out/encoder_torch_compile.jsonl"
    ;;
  *)
    echo "usage: $0 tests|warm|bench [MODEL_DIR]" >&2
    exit 2
    ;;
esac
