#!/usr/bin/env bash
# The training recipe on the GPU machine, detached so that it outlives one 10-minute
# `device` call, and followed by later calls (each must start within 30 s of the last,
# or the machine and everything on it is given back):
#   INIT=models/ldqa-small FINETUNE_MINUTES=9 LONG_SHARE=0.3 \
#     bash scripts/device-train.sh start .data-squad    # launches train/run_gpu.sh
#   bash scripts/device-train.sh wait 540               # returns at the next milestone
# `wait` returns as soon as the weights are exported (they are copied to $OUT/model at
# once, before the evaluation: the weights are what a lost machine costs), when the
# recipe is done (metrics, predictions, log and curves copied to $OUT/run), or after
# SECONDS. WORK (default /tmp/ldqa/work) holds the run.
set -uo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/ldqa/work}
out=${OUT:-/tmp/out}
log=$work/out/train_log.jsonl
case ${1:?start or wait} in
  start)
    mkdir -p "$work/out"
    setsid nohup bash train/run_gpu.sh "${2:?data dir}" "$work" >"$work/recipe.out" 2>&1 </dev/null &
    echo "started: pid $!, log $work/recipe.out"
    ;;
  wait)
    deadline=$((SECONDS + ${2:?seconds}))
    while ((SECONDS < deadline)); do
      if [[ ! -f $work/exported && -f $log ]] && grep -q '"phase": "export"' "$log"; then
        mkdir -p "$out/model"
        cp "$work"/out/*.safetensors "$work/out/config.json" "$log" "$out/model/"
        cp models/ldqa-small/tokenizer.model "$work/out/"
        touch "$work/exported"
        echo "weights exported and copied to \$OUT/model"
        break
      fi
      if grep -q "RECIPE DONE" "$work/recipe.out" 2>/dev/null; then
        mkdir -p "$out/run"
        cp "$work"/out/{metrics.json,predictions_dev.json,train_log.jsonl,loss_curves.png} "$out/run/"
        echo "recipe done, results copied to \$OUT/run"
        break
      fi
      if ! pgrep -f train/run_gpu.sh >/dev/null; then
        echo "recipe not running"
        break
      fi
      sleep 5
    done
    grep -v '"step"' "$work/recipe.out" | tail -n 8
    tail -n 2 "$work/recipe.out"
    ;;
esac
