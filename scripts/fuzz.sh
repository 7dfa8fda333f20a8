#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS on a
# copy of its seed corpus (tests/fuzz/corpus/<target>); new inputs land in the copy,
# never in the repository. Prints each target's executions; a crash stops the run with
# the input saved under build-fuzz/findings/.
#   scripts/fuzz.sh [SECONDS]        (CI: a few seconds each; by hand: minutes)
#   scripts/fuzz.sh 600 fuzz_readers  (one target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(fuzz_readers fuzz_tokenizer fuzz_model_files fuzz_squad fuzz_fts_query fuzz_batch)
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DLDQA_FUZZ=ON -DLDQA_WERROR=ON >build-fuzz.configure.log 2>&1 ||
  { cat build-fuzz.configure.log; exit 1; }
cmake --build build-fuzz --parallel "$(nproc)"
mkdir -p build-fuzz/findings
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t
  rm -rf "$work" && mkdir -p "$work" && cp tests/fuzz/corpus/"$t"/* "$work"/
  log=build-fuzz/$t.log
  if ! build-fuzz/tests/fuzz/"$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix=build-fuzz/findings/"$t"- "$work" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t FAILED (input under build-fuzz/findings/)" >&2
    exit 1
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo "?")
  echo "fuzz: $t: $runs executions in ${seconds} s, corpus $(ls "$work" | wc -l) inputs, no crash"
done
