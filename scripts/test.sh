#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the release build (with the
# CUDA kernels when nvcc is present; GPU tests only run where a device is), then a
# CPU build under AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Formatting is part of the build's contract (.clang-format).
git ls-files '*.cpp' '*.hpp' '*.cu' | xargs clang-format --dry-run --Werror
scripts/build.sh build
(cd build && ctest --output-on-failure)
# The installed package: cmake --install, then examples/embed built against it with
# find_package(ldqa) and run on the samples with the installed bundled model.
rm -rf build/install build/embed
cmake --install build --prefix "$PWD/build/install" >/dev/null
cmake -S examples/embed -B build/embed -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/embed
mkdir -p build/embed/work
build/embed/embed data/samples build/embed/work/index.db "Who was the first keeper of the lighthouse?" |
  tee build/embed/answer.txt
grep -q "^Thomas Marsh" build/embed/answer.txt
echo "installed package: OK"
scripts/build.sh build-sanitize -DLDQA_CUDA=OFF -DLDQA_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build-sanitize && ctest --output-on-failure -LE slow)
# The libFuzzer targets, a few seconds each from their seed corpora (longer by hand:
# scripts/fuzz.sh 600).
scripts/fuzz.sh 8
