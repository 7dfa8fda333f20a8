#!/usr/bin/env bash
# Keeps the models' weights out of what a `device` call sends (the checkout's tracked
# and untracked-not-ignored files, 64 MiB in all; models/ holds more than that):
#   scripts/device-lighten.sh on    untrack every models/*/*.safetensors in the index and
#                                   ignore them locally (.git/info/exclude); the files
#                                   stay on disk, and a call that needs some names them
#                                   in `carry` (ignored paths travel only when carried)
#   scripts/device-lighten.sh off   back as committed
# Commit nothing while it is on: the index would record the weights as deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
weights=(models/*/*.safetensors)
exclude=.git/info/exclude
pattern="/models/*/*.safetensors"
case ${1:?on or off} in
  on)
    git rm -q --cached --ignore-unmatch "${weights[@]}"
    mkdir -p "$(dirname "$exclude")"
    grep -qxF "$pattern" "$exclude" 2>/dev/null || echo "$pattern" >>"$exclude"
    ;;
  off)
    if [[ -f $exclude ]]; then
      grep -vxF "$pattern" "$exclude" >"$exclude.tmp" || true
      mv "$exclude.tmp" "$exclude"
    fi
    git reset -q HEAD -- models
    ;;
esac
git status --short models/ | head
