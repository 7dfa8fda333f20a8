#!/usr/bin/env bash
# Stages here, in .stage-ab/ (git-ignored; carry it with .device.tar.xz), what issue 11
# §4's training A/B needs when it starts from scratch in one `device` call: a slice of
# the pretraining corpus, tokenised here (train/pretokenize.py, with Debian's
# python3-sentencepiece) into .stage-ab/corpus-ids, and SQuAD's train and dev files in
# .stage-ab/data/squad (fine-tuning; dev is read, not evaluated). ~30 MB: it fits beside
# the checkout and the binaries, where the pretraining checkpoint (85 MB) and the whole
# tokenised corpus need several calls each (scripts/device-pretrain.sh stage).
#   bash scripts/stage-train-ab.sh [CORPUS_SHARD...]   default: the SQuAD train contexts,
#        two Wikipedia shards, one Britannica and one Gutenberg (~22 M tokens; names
#        under $DATA/corpus, without .txt.gz)
# DATA: the shared data folder (../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
shards=("$@")
((${#shards[@]} > 0)) || shards=(squad-train-contexts-000 wikipedia-2015-000 wikipedia-2015-001 britannica-000 gutenberg-nonfiction-000)
python=python3
"$python" -c "import sentencepiece" 2>/dev/null || python=/usr/bin/python3  # a venv without it
rm -rf .stage-ab
slice=$(mktemp -d)
trap 'rm -rf "$slice"' EXIT
mkdir -p "$slice/corpus" .stage-ab/data/squad
for shard in "${shards[@]}"; do
  [[ -f $data/corpus/$shard.txt.gz ]] || { echo "no corpus shard $data/corpus/$shard.txt.gz" >&2; exit 2; }
  ln -s "$(realpath "$data/corpus/$shard.txt.gz")" "$slice/corpus/"
done
"$python" train/pretokenize.py --data "$slice" --tokenizer models/ldqa-base-pretrained/tokenizer.model \
  --out .stage-ab/corpus-ids --part-mib 1000
cp "$data/squad/train-v1.1.json.gz" "$data/squad/dev-v1.1.json.gz" .stage-ab/data/squad/
du -sh .stage-ab
