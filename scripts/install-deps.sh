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
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
