#!/usr/bin/env bash
# Builds the CUDA tree here (sm_90 only: the GPU machine is an H200) and copies what the GPU machine needs into
# .device/ and .device.tar.xz (git-ignored; carry the archive): the `ldqa` command with
# libldqa.so (evaluation and calibration run through it there too), the GPU tests and
# the benchmarks, and every shared library they need that is not the C/C++ runtime
# (that machine's image has its own, newer). cuBLAS comes from that machine's CUDA/PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build-cuda -DLDQA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real
rm -rf .device && mkdir -p .device/lib
cp build-cuda/app/ldqa build-cuda/tests/ldqa_gpu_tests build-cuda/tests/ldqa_gpu_engine_tests build-cuda/bench/ldqa_attention_bench \
  build-cuda/attention/libldqa_attention_capi.so build-cuda/bench/ldqa_encoder_bench .device/
cp -L build-cuda/lib/libldqa.so.0 .device/lib/
for binary in .device/ldqa .device/ldqa_gpu_tests .device/ldqa_gpu_engine_tests .device/lib/libldqa.so.0; do
  ldd "$binary" | awk '$3 ~ /^\// { print $3 }'
done | sort -u | grep -Ev '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux-x86-64)\.so' |
  grep -v libcublas | grep -v libcudart | while read -r lib; do cp -L "$lib" .device/lib/; done
strip .device/ldqa* .device/*.so .device/lib/*.so*
# The checkout (models/ included) and the data share the 64 MiB a call may carry:
# the fat binaries compress about tenfold.
tar cJf .device.tar.xz .device
du -sh .device .device.tar.xz
