#!/usr/bin/env bash
# The whole recipe on the GPU machine, from the repository root:
#   bash train/run_gpu.sh DATA_DIR WORK_DIR
# DATA_DIR holds squad/ and corpus/ (a copy of ../shared/data, or the subset the
# 64 MiB transfer allows: see train/README.md). Writes WORK_DIR/out: weights shards,
# config.json, metrics.json, train_log.jsonl, loss_curves.png, predictions_dev.json.
# INIT=models/NAME continues fine-tuning that exported model instead of pretraining.
set -euo pipefail
data=${1:?data dir}
work=${2:?work dir}
mkdir -p "$work/out"
export PYTHONUNBUFFERED=1
python3 train/train.py --data "$data" --tokenizer models/ldqa-small/tokenizer.model --out "$work/out" \
  --pretrain-minutes "${PRETRAIN_MINUTES:-6.5}" --pretrain-long-minutes "${PRETRAIN_LONG_MINUTES:-1.5}" \
  --finetune-minutes "${FINETUNE_MINUTES:-4.5}" --long-share "${LONG_SHARE:-0.125}" ${INIT:+--init "$INIT"}
python3 train/plot_curves.py "$work/out/train_log.jsonl" "$work/out/loss_curves.png"
echo "RECIPE DONE"
