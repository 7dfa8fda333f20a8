#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job on the bundled defaults.
# Today the main job is the attention core on this machine's CPU (a small benchmark
# run); the document QA command (`ldqa index` / `ldqa ask`) replaces it once the app
# lands (see the README's status table).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
build/bench/ldqa_attention_bench --device cpu --batch 1 --n 1024,4096 --heads 12 --reps 3
