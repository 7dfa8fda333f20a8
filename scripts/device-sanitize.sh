#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from the binaries in .device.tar.xz
# (scripts/stage-device.sh): the attention GPU tests under compute-sanitizer's memcheck,
# racecheck and synccheck, on the small grid (LDQA_GPU_SMALL: one grid point in N, no
# length of 1000 or more; the 20k/65k-token comparisons left out), so that racecheck
# ends in minutes. Logs go to $OUT/sanitize_<tool>.log; exits non-zero when a tool
# reports an error or a test fails.
#   bash scripts/device-sanitize.sh [memcheck racecheck synccheck]
# LDQA_SANITIZE_LIMIT_S: seconds per tool (540); a tool cut by it reports exit 124.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
export LDQA_GPU_SMALL=${LDQA_GPU_SMALL:-12}
tools=("$@")
((${#tools[@]} > 0)) || tools=(memcheck racecheck synccheck)
status=0
for tool in "${tools[@]}"; do
  start=$(date +%s)
  timeout "${LDQA_SANITIZE_LIMIT_S:-540}" compute-sanitizer --tool "$tool" --error-exitcode 3 --print-limit 20 \
    .device/ldqa_gpu_tests -r compact "[attention],[layout],[topk],[backward]~[long]" >"$out/sanitize_$tool.log" 2>&1
  rc=$?
  echo "$tool: exit $rc after $(($(date +%s) - start)) s; $(grep -E 'ERROR SUMMARY|Passed|Failed' "$out/sanitize_$tool.log" | tr '\n' ' ')"
  ((rc == 0)) || status=1
done
exit $status
