#!/usr/bin/env bash
# Builds the CUDA tree here (sm_90 + PTX) and copies what the GPU machine needs into
# .device/ (git-ignored), to be named in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build-cuda -DLDQA_CUDA=ON
rm -rf .device && mkdir -p .device/lib
cp build-cuda/tests/ldqa_gpu_tests build-cuda/bench/ldqa_attention_bench build-cuda/bench/libldqa_attention_capi.so .device/
cp "$(g++ -print-file-name=libgomp.so.1)" .device/lib/
du -sh .device
