#!/usr/bin/env bash
# Installs what is needed, builds, and runs the main job on the bundled defaults: index
# the sample documents (data/samples: txt, md, html, pdf) and ask a question; the
# bundled model answers, each answer with its source: file, character offsets, page,
# and the surrounding text.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
db=build/demo/index.db
mkdir -p build/demo
build/app/ldqa --db "$db" index data/samples
question=${1:-"Who became keeper after Thomas Marsh died?"}
echo "Q: $question"
build/app/ldqa --db "$db" ask -k 2 "$question"
