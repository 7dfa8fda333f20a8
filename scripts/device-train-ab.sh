#!/usr/bin/env bash
# Issue 11 §4 on the GPU machine: training through our attention op against training
# through FlexAttention, same seed, data and masks, one arm after the other on the GPU
# alone. Two ways to start, chosen by what is there:
# - from the pretraining checkpoint and the tokenised corpus, staged over several calls
#   (scripts/device-pretrain.sh stage: $STAGE/pretrained, $STAGE/corpus-ids, $STAGE/data);
# - otherwise from scratch (random weights, ldqa-base's architecture), in one call, on
#   the tokenised corpus slice and SQuAD files scripts/stage-train-ab.sh put in
#   .stage-ab/ (carried);
#   throughput and loss agreement need no trained weights.
# The op's library comes from .device.tar.xz (.device/libldqa_attention_capi.so).
#   bash scripts/device-train-ab.sh start [STEPS]   detached: for each attention, MLM at
#        512 tokens for STEPS steps (default 300; the loss curves compared), MLM at 2048
#        for 100 steps, and fine-tuning on 4096-token windows only for 150 steps
#   bash scripts/device-train-ab.sh quick [STEPS]   detached, for a session with little device
#        time left: ONE process per attention (one start-up, one corpus load), phase after
#        phase: MLM at 512 for STEPS steps (default 300), MLM at 2048 for 0.5 minutes, then
#        fine-tuning on 4096-token windows for 60 steps (the first 30 SQuAD articles, no
#        evaluation); bench/train_ab.py tells the phases apart. AB_LONG_MINUTES and
#        AB_FINETUNE_STEPS (0: no fine-tuning) shorten it further; AB_ARMS (default
#        "ldqa flex") adds arms: "ldqa flex dense" gives the spread of two correct
#        attentions that differ only in rounding (FlexAttention against the dense masked
#        path), against which ours-vs-Flex is judged; AB_SEED (default 11) changes the
#        seed of every arm alike (initialisation, data order, masks): a second seed tells
#        the loss curves' spread between seeds from that between attentions;
#        AB_DETERMINISTIC=1 runs every arm with train.py --deterministic (two runs of
#        one arm otherwise differ as much as two attentions do: 2026-12-06, seed 12)
#   bash scripts/device-pretrain.sh wait 540        poll (the same runs folder)
#   python3 bench/train_ab.py $WORK/tab-*           the table: tokens/s, MFU, loss agreement
set -uo pipefail
cd "$(dirname "$0")/.." || exit
source scripts/device-env.sh
work=${WORK:-/tmp/ldqa/work}
stage=${STAGE:-/tmp/ldqa/stage}
steps=${2:-300}
tok=models/ldqa-base-pretrained/tokenizer.model
mode=${1:?start or quick}
case $mode in
  start | quick)
    mkdir -p "$work/tab"
    if compgen -G "$stage/pretrained/*.safetensors" >/dev/null && [[ -d $stage/corpus-ids ]]; then
      data=$stage/data
      from="--resume $stage/pretrained"
      corpus="--corpus-ids $stage/corpus-ids"
    elif [[ -d .stage-ab/corpus-ids && -d .stage-ab/data/squad ]]; then
      data=$PWD/.stage-ab/data
      # ldqa-base's architecture (the checkpoint's "model" section), new weights
      config=$(python3 -c 'import json; print(json.dumps(json.load(open("models/ldqa-base-pretrained/config.json"))["model"]))')
      from="--config '$config'"
      corpus="--corpus-ids $PWD/.stage-ab/corpus-ids"
    else
      echo "nothing to train from: neither $stage/pretrained + $stage/corpus-ids (scripts/device-pretrain.sh stage)" \
        "nor a carried .stage-ab/ (scripts/stage-train-ab.sh)" >&2
      exit 2
    fi
    # One arm after the other (a shared GPU would time neither); --compile as a session would.
    # train_py NAME ARGS...: the train.py line every run shares, for the script below
    # (\$attention is the script's loop variable, expanded when the script runs).
    train_py() {
      local name=$1
      shift
      echo "python3 train/train.py --data $data --tokenizer $tok --out $work/tab-\$attention-$name" \
        "--attention \$attention --compile --seed ${AB_SEED:-11} --log-every 10 ${AB_DETERMINISTIC:+--deterministic} $*"
    }
    if [[ $mode == quick ]]; then
      finetune="--para-batch 0 --long-share 1 --finetune-steps ${AB_FINETUNE_STEPS:-60} --limit-articles 30 --eval-settings none"
      [[ ${AB_FINETUNE_STEPS:-60} == 0 ]] && finetune=--skip-finetune
      script=$(
        cat <<EOF
set -x
for attention in ${AB_ARMS:-ldqa flex}; do
  phases="--pretrain-long-minutes ${AB_LONG_MINUTES:-0.5} $finetune"
  # dense, the rounding control: the 512-token phase only (its 2048-token scores, kept
  # for the backward of eight layers, would not fit)
  [[ \$attention == dense ]] && phases="--pretrain-long-minutes 0 --skip-finetune"
  $(train_py all "$corpus $from --pretrain-steps $steps \$phases")
done
EOF
      )
    else
      script=$(
        cat <<EOF
set -x
for attention in ldqa flex; do
  $(train_py mlm512 "$corpus $from --pretrain-steps $steps --pretrain-long-minutes 0 --skip-finetune")
  $(train_py mlm2048 "$corpus $from --pretrain-len 2048 --pretrain-batch 64 --pretrain-steps 100" \
    "--pretrain-long-minutes 0 --skip-finetune")
  # fine-tuning from the pretrained checkpoint, or new weights (models/ldqa-base exceeds
  # one call's carry)
  $(train_py ft4096 "$from --pretrain-minutes 0 --pretrain-long-minutes 0 --para-batch 0 --long-share 1" \
    "--finetune-steps 150 --eval-settings none")
done
EOF
      )
    fi
    setsid nohup bash -c "$script" >"$work/tab/run.out" 2>&1 </dev/null &
    echo "$!" >"$work/tab/pid"
    echo "started: pid $!, log $work/tab/run.out"
    ;;
  *)
    echo "usage: $0 start|quick [STEPS]" >&2
    exit 2
    ;;
esac
