#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): the C++ engine's whole-set evaluation of an
# exported model, through the `ldqa` command carried in .device.tar.xz
# (scripts/stage-device.sh), in the settings a model card reports:
#   SQuAD v1.1 dev: paragraph, document (whole article), corpus (all dev articles indexed,
#   every question asked through retrieval with no reading budget, as on CUDA by default;
#   and on every 5th question both without a budget and at the CPU's default budget
#   --read-tokens 4096, bench/squad_spread.py --every 5); FairytaleQA val: document (whole
#   stories); the no-answer calibration on every dev question (own paragraph, the next
#   paragraph of its article, another article's).
#   bash scripts/device-eval.sh MODEL_DIR DATA_DIR [SETTINGS]
# DATA_DIR holds squad/dev-v1.1.json.gz and qa/fairytaleqa/val.json.gz. SETTINGS (default
# all) is a comma list of paragraph, document, corpus, corpus5, corpus5-4096, fairytale,
# calibrate.
# One JSON line per setting in $OUT/eval_cpp.jsonl, predictions beside it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
source scripts/device-env.sh
model=${1:?exported model folder}
data=${2:?data folder}
settings=${3:-paragraph,document,fairytale,calibrate,corpus5,corpus5-4096,corpus}
out=${OUT:-/tmp/out}
mkdir -p "$out"
ldqa=(.device/ldqa --model "$model" --device cuda --json)
dev=$data/squad/dev-v1.1.json.gz
run() {  # NAME, then the ldqa arguments
  local name=$1
  shift
  echo "== $name: $*" >&2
  local t0=$SECONDS
  "${ldqa[@]}" "$@" 2>>"$out/eval_cpp.err" | tee -a "$out/eval_cpp.jsonl"
  echo "$name: exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$out/eval_cpp.err" >&2
}
for s in ${settings//,/ }; do
  case $s in
    paragraph | document | corpus)
      run "$s" eval --setting "$s" --predictions "$out/cpp_$s.json" "$dev" ;;
    corpus5 | corpus5-4096)
      every5=/tmp/ldqa/dev-every5.json
      [[ -f $every5 ]] || python3 bench/squad_spread.py --every 5 "$dev" "$every5" >&2
      budget=0
      [[ $s == corpus5-4096 ]] && budget=4096
      run "$s" eval --setting corpus --read-tokens "$budget" --predictions "$out/cpp_$s.json" "$every5" ;;
    fairytale)
      run "$s" eval --setting document --predictions "$out/cpp_fairytale.json" "$data/qa/fairytaleqa/val.json.gz" ;;
    calibrate)
      run "$s" calibrate --questions 100000 -o "$model/calibration.json" "$dev"
      cp "$model/calibration.json" "$out/" ;;
    *)
      echo "unknown setting $s" >&2
      exit 2 ;;
  esac
done
tail -n 20 "$out/eval_cpp.err"
