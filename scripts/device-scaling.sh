#!/usr/bin/env bash
# Issue 13's measurements on a machine with several GPUs (the `device` tool's
# nvidia-h200-x2/x4/x8 kinds), in one call:
#   bash scripts/device-scaling.sh train IDS_DIR STEPS N...   MLM pretraining of ldqa-base's
#        shape for STEPS steps of the same global batch (256 x 512 tokens) with each process
#        count N (torchrun; N = 1 runs plain python): tokens/s and the loss, which must agree
#        across N (same global batch, same seeds)
#   bash scripts/device-scaling.sh answer DEV_JSON MODEL DEVICES...   `ldqa eval --setting
#        corpus` on the whole file once per device list (e.g. cuda:0 cuda:0,cuda:1):
#        questions/s and F1, which must not depend on the devices
# Needs .device/ (scripts/stage-device.sh) for `answer`. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
case ${1:?train or answer} in
  train)
    ids=${2:?pre-tokenised corpus folder} steps=${3:?steps}
    shift 3
    for n in "$@"; do
      launcher=(python3)
      ((n > 1)) && launcher=(torchrun --standalone --nproc-per-node "$n")
      log=$out/train-$n.jsonl
      "${launcher[@]}" train/train.py --data /nonexistent --out "/tmp/ldqa/scaling-$n" \
        --tokenizer models/ldqa-base-pretrained/tokenizer.model --corpus-ids "$ids" \
        --config '{"vocab_size":24000,"hidden":512,"layers":8,"heads":8,"ffn":2048}' \
        --objective mlm --pretrain-steps "$steps" --pretrain-long-minutes 0 --skip-finetune --log-every 10 --workers 3 \
        >"$log" 2>"$out/train-$n.err"
      echo "== $n process(es), exit $?"
      grep '"step"' "$log" | tail -n 1 | cut -c1-300
      grep '"done"' "$log" | cut -c1-300
      tail -n 3 "$out/train-$n.err" | grep -i error
    done
    ;;
  answer)
    dev=${2:?SQuAD dev file} model=${3:?model folder}
    shift 3
    source scripts/device-env.sh
    for devices in "$@"; do
      echo "== --devices $devices"
      # the corpus setting builds its own index of the file's articles
      /usr/bin/time -f "%e s wall" .device/ldqa --model "$model" eval --setting corpus --devices "$devices" --json "$dev" \
        2>&1 | tail -n 3 | cut -c1-400
    done
    ;;
esac
