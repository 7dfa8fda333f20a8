# Sourced on the GPU machine: unpacks .device.tar.xz (scripts/stage-device.sh) once,
# then puts on the library path the libraries carried in .device/lib and that machine's
# cuBLAS (its CUDA toolkit, or the nvidia-cublas wheel PyTorch uses).
if [[ -f .device.tar.xz && ( ! -d .device || .device.tar.xz -nt .device ) ]]; then
  rm -rf .device && tar xJf .device.tar.xz && touch .device
fi
cublas_dir=$(for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
  $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
  find "$d" -maxdepth 4 -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null; done | head -n 1)
export LD_LIBRARY_PATH="$PWD/.device/lib:${cublas_dir}:${LD_LIBRARY_PATH:-}"
export LDQA_SOURCE_DIR=$PWD
