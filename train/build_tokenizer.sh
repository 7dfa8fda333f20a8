#!/usr/bin/env bash
# Trains the SentencePiece model (unigram, 16k pieces, byte fallback) on this machine's
# CPU with Debian's spm_train, the same library version the C++ side links.
#   train/build_tokenizer.sh ../shared/data models/ldqa-small/tokenizer
set -euo pipefail
data=${1:-../shared/data}
prefix=${2:-models/ldqa-small/tokenizer}
mkdir -p "$(dirname "$prefix")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$(dirname "$0")/tokenizer_corpus.py" --data "$data" --out "$tmp/input.txt"
# ids: 0 <pad>, 1 <unk>, 2 [CLS], 3 [SEP], 4 [MASK]; nmt_nfkc normalisation; the C++
# side gets every piece's byte span in the original text from the same library.
spm_train --input="$tmp/input.txt" --model_prefix="$prefix" --model_type=unigram --vocab_size="${VOCAB_SIZE:-16000}" \
  --character_coverage=0.9995 --byte_fallback=true --split_digits=true \
  --pad_id=0 --unk_id=1 --bos_id=-1 --eos_id=-1 --control_symbols='[CLS],[SEP],[MASK]' \
  --input_sentence_size=1500000 --shuffle_input_sentence=true --max_sentence_length=20000 \
  --num_threads="$(nproc)" --seed_sentencepiece_size=1000000 --minloglevel=1
rm -f "$prefix.vocab"
echo "wrote $prefix.model"
