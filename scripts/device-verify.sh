#!/usr/bin/env bash
# The first call of a session after kernel changes (the `device` tool; carry
# .device.tar.xz from scripts/stage-device.sh, and models/ldqa-small for [model_gpu]):
# within one call's 10 minutes, on the committed code,
#   1. the C++ bench, forward and backward, both kernel families, on a quiet GPU;
#   2. at once: the GPU suite on the default kernels and with mma.sync forced (each case
#      in its own process, scripts/device-attention.sh tests), and compute-sanitizer's
#      memcheck, racecheck and synccheck on the small grid (scripts/device-sanitize.sh);
#   3. the PyTorch op's GPU tests (scripts/device-attention.sh op).
# Logs under $OUT; the last lines on stdout say what passed.
#   bash scripts/device-verify.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit
source scripts/device-env.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$out/gpu.txt"
for kernel in mma.sync wgmma; do
  for pass in forward backward; do
    LDQA_ATTENTION_KERNEL=$kernel timeout 60 .device/ldqa_attention_bench --device cuda --pass $pass \
      --batch 1,8 --n 16384,65536 --reps 20 2>&1 | grep '^| cuda'
  done
done | tee "$out/bench_cpp.md"
seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
echo "== tests and sanitizers from $((SECONDS - start)) s, seed $seed"
(OUT=$out/default LDQA_TEST_SEED=$seed LDQA_TEST_KERNELS=default LDQA_CASE_LIMIT_S=220 LDQA_TEST_JOBS=6 \
  bash scripts/device-attention.sh tests >"$out/suite_default.txt" 2>&1) &
(OUT=$out/mma LDQA_TEST_SEED=$seed LDQA_TEST_KERNELS=mma.sync LDQA_TEST_SPEC="~[model_gpu]" LDQA_CASE_LIMIT_S=220 \
  LDQA_TEST_JOBS=4 bash scripts/device-attention.sh tests >"$out/suite_mma.txt" 2>&1) &
for tool in memcheck racecheck synccheck; do
  (OUT=$out LDQA_SANITIZE_LIMIT_S=240 bash scripts/device-sanitize.sh "$tool" >"$out/sanitize_$tool.txt" 2>&1) &
done
wait
echo "== op tests from $((SECONDS - start)) s"
OUT=$out timeout 150 bash scripts/device-attention.sh op 2>&1 | tail -n 5
grep -h -v '^passed\|^name\|^NVIDIA' "$out/suite_default.txt" "$out/suite_mma.txt"
cat "$out"/sanitize_*.txt
echo "== total $((SECONDS - start)) s"
