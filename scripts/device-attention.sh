#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from binaries built here and carried in
# .device/ (scripts/stage-device.sh): the GPU tests, the C++ benchmark (forward and
# backward) and the PyTorch comparison. Logs go to $OUT.
#   bash scripts/device-attention.sh all|tests|op|bench|torch [bench/attention_torch.py arguments]
# e.g. bash scripts/device-attention.sh torch --shapes "H12 w256 g64" --n 16384 --scattered-n ""
# tests runs the GPU tests twice, each test case in a process of its own: with every pass
# on the mma.sync kernels (LDQA_ATTENTION_KERNEL=mma.sync: the path of GPUs before Hopper,
# forced), then with every head-dim-64 forward and backward on Hopper's wgmma path
# (LDQA_ATTENTION_KERNEL=wgmma); each pass's default (kernel_path in attention_gpu.cu) is
# one of the two. [model_gpu] cases only where the call carried the models' weights. op
# runs the PyTorch op's GPU tests (tests/gpu/test_attention_op_gpu.py: opcheck, compile,
# the encoder through the op against FlexAttention's path) on the default kernels. bench
# times both paths. The environment's LDQA_ATTENTION_KERNEL applies to torch.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
what=${1:-all}
shift || true
if [[ $what == all || $what == tests ]]; then
  # Every test case in a process of its own under its own time limit: a kernel that hangs
  # (or faults and poisons the CUDA context) costs that case alone, and the log names it.
  # The cases spend most of their time in the float64 reference on the CPU, so
  # LDQA_TEST_JOBS of them (8) run at once; the log lists them in order.
  # The mma.sync kernels first, then every head-dim-64 pass on Hopper's wgmma path.
  # LDQA_CASE_LIMIT_S: seconds per case (300; the longest, a backward grid, took up to
  # 119 s on the H100 beside other cases); LDQA_TEST_KERNELS: which runs ("mma.sync
  # wgmma"; default too if wanted); LDQA_TEST_SPEC: a Catch2 test spec choosing the cases
  # instead. A case that does not pass gets its log's last lines; with LDQA_TEST_TRACE=1
  # in the environment the grid cases name each point as it starts, so the last one named
  # is where it hung.
  # [model_gpu] needs models/ldqa-small's weights, and its reader case models/ldqa-base's
  # (85 MB: more than one call carries; staged over two calls on one held machine).
  filter="~[model_gpu]"
  if compgen -G "models/ldqa-small/*.safetensors" >/dev/null; then
    filter=""
    compgen -G "models/ldqa-base/*.safetensors" >/dev/null || filter="~*reader answers the fixture questions*"
  fi
  filter=${LDQA_TEST_SPEC:-$filter}
  mapfile -t cases < <(.device/ldqa_gpu_tests --list-test-names-only ${filter:+"$filter"} | grep -v '^$')
  cases_dir=$(mktemp -d)
  run_case() {  # kernel, index, name: the verdict line in $cases_dir/INDEX.verdict
    local start=$SECONDS rc verdict
    LDQA_ATTENTION_KERNEL=$1 timeout "${LDQA_CASE_LIMIT_S:-300}" .device/ldqa_gpu_tests "$3" -r compact \
      >"$cases_dir/$2.log" 2>&1
    rc=$?
    case $rc in 0) verdict=passed ;; 124) verdict="TIMED OUT" ;; *) verdict="FAILED ($rc)" ;; esac
    printf '%-9s %4ds  %s\n' "$verdict" $((SECONDS - start)) "$3" >"$cases_dir/$2.verdict"
    [[ $rc == 0 ]] || sed 's/^/    /' "$cases_dir/$2.log" | tail -n 30 >>"$cases_dir/$2.verdict"
  }
  # Cases still running when this script is stopped (a `timeout` around it) go with it:
  # left behind, they would share the GPU and CPUs with whatever the call runs next.
  # Only this script's own cases: each job's `timeout` (which passes the signal on to its
  # case); a pattern over all processes would also stop another run's cases.
  trap 'for job in $(jobs -p); do pkill -P "$job" 2>/dev/null; done' EXIT
  trap 'exit 143' TERM INT
  for kernel in ${LDQA_TEST_KERNELS:-mma.sync wgmma}; do
    log="$out/gpu_tests_$kernel.log"
    start=$SECONDS
    for i in "${!cases[@]}"; do
      while (($(jobs -rp | wc -l) >= ${LDQA_TEST_JOBS:-8})); do wait -n; done
      run_case "$kernel" "$i" "${cases[$i]}" &
    done
    wait
    for i in "${!cases[@]}"; do cat "$cases_dir/$i.verdict"; done >"$log"
    failed=$(grep -cv '^passed\|^    ' "$log")
    echo "gpu tests ($kernel kernels): ${#cases[@]} cases, $failed not passed, $((SECONDS - start)) s" >>"$log"
    cat "$log"
  done
  rm -rf "$cases_dir"
fi
if [[ $what == all || $what == op ]]; then
  LDQA_ATTENTION_LIB=.device/libldqa_attention_capi.so timeout 400 python3 tests/gpu/test_attention_op_gpu.py -v \
    2>&1 | tee "$out/op_tests.log"
  echo "op tests exit: ${PIPESTATUS[0]}" | tee -a "$out/op_tests.log"
fi
if [[ $what == all || $what == bench ]]; then
  # 200 repetitions: 30 (~0.1 s of work per row) finish before the clock settles under
  # sustained load and read ~4 % fast (docs/bench/attention.md, 2026-12-06, sixth session).
  for shape in "--heads 12 --window 256 --globals 64" "--heads 8 --window 128 --globals 48" \
    "--heads 6 --window 128 --globals 48"; do
    for kernel in mma.sync wgmma; do  # each path (the device column says which ran)
      for pass in forward backward; do
        # shellcheck disable=SC2086 # the shape is several arguments
        LDQA_ATTENTION_KERNEL=$kernel timeout 100 .device/ldqa_attention_bench --device cuda --pass $pass \
          --batch 1,8 --n 4096,16384,65536 --reps 200 $shape
      done
    done
  done 2>&1 | tee "$out/bench_cpp.md"
  timeout 60 .device/ldqa_attention_bench --device cuda --batch 1,8 --n 16384 --reps 200 --globals-at scattered \
    2>&1 | tee -a "$out/bench_cpp.md"
fi
if [[ $what == all || $what == torch ]]; then
  # Further arguments narrow the run (FlexAttention compiles per shape, for minutes).
  PYTHONUNBUFFERED=1 timeout 540 python3 bench/attention_torch.py --lib .device/libldqa_attention_capi.so \
    --json "$out/bench_torch.json" "$@" 2>&1 | tee "$out/bench_torch.md"
fi
