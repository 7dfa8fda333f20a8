#!/usr/bin/env bash
# Installs the Debian 12 packages ldqa builds against. Idempotent: does nothing when
# everything is already there.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config git clang-format python3
  libeigen3-dev catch2
  libboost-program-options-dev libsqlite3-dev
  libsentencepiece-dev sentencepiece
  libgumbo-dev libpoppler-cpp-dev libssl-dev sqlite3 nlohmann-json3-dev zlib1g-dev
  clang libclang-rt-14-dev  # the libFuzzer targets (scripts/fuzz.sh)
  python3-torch python3-numpy python3-sentencepiece  # the training recipe's CPU test (tests/train)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A SASS disassembler for the test attention_wgmma_sass (scripts/check-wgmma-sass.py),
# where nvcc has none beside it (NVIDIA's CUDA 13 here ships neither nvdisasm nor
# cuobjdump): CUDA 11.8's nvdisasm from Debian's non-free nvidia-cuda-toolkit, taken out of
# the package into .tools/ through a private apt state (nothing installed, the system's
# sources untouched). Best effort: without it that test is not registered and the
# configure log says so.
fetch_nvdisasm() {
  local root=$1 dest=$1/.tools/nvdisasm-11.8 nvcc_dir=/usr/local/cuda/bin tmp
  [[ -x $nvcc_dir/nvcc ]] || return 0
  [[ -x $nvcc_dir/nvdisasm || -x $nvcc_dir/cuobjdump || -x $dest/nvdisasm ]] && return 0
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt's download user reads and writes here
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm non-free" \
    >"$tmp/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/none"
                  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache")
  if apt-get "${apt_opts[@]}" update -qq >/dev/null 2>"$tmp/log" &&
     (cd "$tmp" && apt-get "${apt_opts[@]}" download -qq nvidia-cuda-toolkit >/dev/null 2>>"$tmp/log") &&
     dpkg-deb -x "$tmp"/nvidia-cuda-toolkit_*.deb "$tmp/x" &&
     install -D -m 755 "$tmp/x/usr/bin/nvdisasm" "$dest/nvdisasm"; then
    echo "fetched CUDA 11.8's nvdisasm into $dest" >&2
  else
    echo "note: could not fetch nvdisasm (Debian non-free nvidia-cuda-toolkit); attention_wgmma_sass will not run:" >&2
    cat "$tmp/log" >&2
  fi
  rm -rf "$tmp"
}
fetch_nvdisasm "$(cd "$(dirname "$0")/.." && pwd)"
