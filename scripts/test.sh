#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the release build (with the
# CUDA kernels when nvcc is present; GPU tests only run where a device is), then a
# CPU build under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Formatting is part of the build's contract (.clang-format).
git ls-files '*.cpp' '*.hpp' '*.cu' | xargs clang-format --dry-run --Werror
scripts/build.sh build
(cd build && ctest --output-on-failure)
scripts/build.sh build-sanitize -DLDQA_CUDA=OFF -DLDQA_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build-sanitize && ctest --output-on-failure -LE slow)
