#!/usr/bin/env bash
# Builds the CUDA tree here (sm_90 + PTX) and copies what the GPU machine needs into
# .device/ and .device.tar.xz (git-ignored; carry the archive): test and bench
# binaries, and the shared libraries that machine's image may lack (libgomp,
# SentencePiece and its protobuf-lite). cuBLAS comes from that machine's CUDA/PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build-cuda -DLDQA_CUDA=ON
rm -rf .device && mkdir -p .device/lib
cp build-cuda/tests/ldqa_gpu_tests build-cuda/bench/ldqa_attention_bench build-cuda/bench/libldqa_attention_capi.so \
  build-cuda/bench/ldqa_encoder_bench build-cuda/bench/ldqa_squad_eval .device/
for lib in libgomp.so.1 libsentencepiece.so.0 libprotobuf-lite.so.32; do
  cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')" .device/lib/
done
strip .device/ldqa_* .device/*.so
# The checkout (models/ included) and the data share the 64 MiB a call may carry:
# the fat binaries compress about tenfold.
tar cJf .device.tar.xz .device
du -sh .device .device.tar.xz
