#!/usr/bin/env bash
# Pretraining on the GPU machine across several `device` calls to one held machine
# (each call within 30 s of the last, or the machine and /tmp go back). The corpus
# travels pre-tokenised (train/pretokenize.py), one part per call; a checkpoint to
# resume travels the same way (its shards are at most 15 MiB).
#
#   bash scripts/device-pretrain.sh stage              merge the carried .stage/ into $STAGE,
#        and whatever this call carries of models/ldqa-base-pretrained into $STAGE/pretrained
#   bash scripts/device-pretrain.sh ab MINUTES FT_MINUTES
#        MLM and ELECTRA side by side from scratch on the same GPU for the same
#        wall-clock minutes, then the same short SQuAD fine-tuning and the whole-dev
#        paragraph evaluation of each (train.py); results in $WORK/ab-{mlm,electra}
#   bash scripts/device-pretrain.sh start NAME [train.py args...]
#        one train.py run, detached, in $WORK/NAME (e.g. --resume ... --skip-finetune)
#   bash scripts/device-pretrain.sh wait SECONDS       until every run ended, or SECONDS
#   bash scripts/device-pretrain.sh fetch GLOB...      copy matching files under $WORK to
#        $OUT (8 files, 16 MiB each, 64 MiB in all per call)
set -uo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/ldqa/work}
stage=${STAGE:-/tmp/ldqa/stage}
out=${OUT:-/tmp/out}
data=${DATA:-$stage/data}  # squad/ for fine-tuning and evaluation
mkdir -p "$work" "$stage"
export PYTHONUNBUFFERED=1

launch() {  # NAME ARGS...: a detached train.py run in $work/NAME
  local name=$1
  shift
  mkdir -p "$work/$name"
  setsid nohup python3 train/train.py --data "$data" --out "$work/$name" "$@" \
    >"$work/$name/run.out" 2>&1 </dev/null &
  echo "$!" >"$work/$name/pid"
  echo "started $name: pid $!"
}

case ${1:?stage, ab, start, wait or fetch} in
  stage)
    [[ -d .stage ]] && cp -r .stage/. "$stage/"
    mkdir -p "$stage/pretrained"
    cp models/ldqa-base-pretrained/* "$stage/pretrained/"
    du -sh "$stage"/* "$stage"/*/* 2>/dev/null
    ;;
  ab)
    minutes=${2:?pretraining minutes} ft=${3:?fine-tuning minutes}
    common=(--tokenizer models/ldqa-base-pretrained/tokenizer.model --corpus-ids "$stage/corpus-ids"
            --config "${CONFIG:?model config JSON}" --pretrain-minutes "$minutes" --pretrain-long-minutes 0
            --finetune-minutes "$ft" --long-share 0 --eval-settings paragraph --compile --workers 7)
    mkdir -p "$work/ab-barrier"
    export AB_BARRIER=$work/ab-barrier AB_COUNT=2  # both start their clocks once both are warm
    for objective in mlm electra; do
      launch "ab-$objective" "${common[@]}" --objective "$objective" --save-pretrained "$work/ab-$objective/pretrained"
    done
    ;;
  start)
    name=${2:?run name}
    shift 2
    launch "$name" "$@"
    ;;
  wait)
    deadline=$((SECONDS + ${2:?seconds}))
    while ((SECONDS < deadline)); do
      running=0
      for p in "$work"/*/pid; do
        [[ -f $p ]] && kill -0 "$(cat "$p")" 2>/dev/null && running=1
      done
      ((running)) || break
      sleep 5
    done
    for d in "$work"/*/; do
      [[ -f $d/run.out ]] || continue
      echo "== $(basename "$d"): $(kill -0 "$(cat "$d/pid")" 2>/dev/null && echo running || echo ended)"
      grep -v '"step"' "$d/run.out" | grep -v '^\s*$' | tail -n 4 | cut -c1-400
      grep '"step"' "$d/run.out" | tail -n 1 | cut -c1-400
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    ;;
  fetch)
    shift
    n=0
    for pattern in "$@"; do
      for f in $work/$pattern; do
        [[ -f $f ]] || continue
        dst="$out/$(basename "$(dirname "$f")")"
        mkdir -p "$dst"
        cp "$f" "$dst/"
        n=$((n + 1))
      done
    done
    echo "fetched $n files"
    ;;
esac
