#!/usr/bin/env bash
# End-to-end tests of the `ldqa` command on the bundled samples: exit codes, JSON,
# summaries, error messages, the progress bar on a terminal (through `script`, a real
# pty) and none when piped, and Ctrl-C during an index run.
# usage: cli_test.sh PATH/TO/ldqa SAMPLES_DIR
set -uo pipefail
ldqa=$1
samples=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
check() {  # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}
contains() { grep -qF -- "$2" <<<"$1"; }

cp -r "$samples" "$tmp/docs"
db="$tmp/state/index.db"

# index the samples: exit 0, summary on stderr
out=$("$ldqa" --db "$db" index "$tmp/docs" 2>&1)
check "index exit 0" test $? -eq 0
check "summary counts" contains "$out" "indexed 4, unchanged 0"
check "no progress bar when not a terminal" bash -c "! grep -q $'\r' <<<\"\$1\"" _ "$out"

# unchanged re-run, JSON summary parses
json=$("$ldqa" --db "$db" --json index "$tmp/docs")
check "json index exit 0" test $? -eq 0
check "json summary" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["unchanged"]==4 and d["indexed"]==0' "$json"

# retrieval finds each format, with offsets and pages
out=$("$ldqa" --db "$db" search "Who kept the Harrow Point light after 1890?")
check "search txt" contains "$out" "lighthouse.txt"
out=$("$ldqa" --db "$db" --json search -k 3 "battery electric ferry delivery")
check "search pdf json" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d[0]["path"].endswith("annual-report.pdf") and d[0]["page"]==2, d' "$out"
out=$("$ldqa" --db "$db" search "astronomical clock moon phases")
check "search html" contains "$out" "museum.html"
out=$("$ldqa" --db "$db" search "tracking disabled")
check "script text not indexed" contains "$out" ""
check "script text not indexed (2)" bash -c "! grep -q museum.html <<<\"\$1\"" _ "$out"

# list / stats
out=$("$ldqa" --db "$db" list)
check "list" contains "$out" "espresso-machine.md"
out=$("$ldqa" --db "$db" --json stats)
check "stats json" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["documents"]==4 and d["integrity"]=="ok"' "$out"

# a corrupt PDF: reported, exit 1, the rest still indexed
printf '%%PDF-1.4\nbroken' >"$tmp/docs/corrupt.pdf"
out=$("$ldqa" --db "$db" index "$tmp/docs" 2>&1)
check "failed file exit 1" test $? -eq 1
check "failure reported" contains "$out" "FAILED $tmp/docs/corrupt.pdf"

# remove, and prune
"$ldqa" --db "$db" remove "$tmp/docs/corrupt.pdf"
check "remove exit 0" test $? -eq 0
rm "$tmp/docs/museum.html" "$tmp/docs/corrupt.pdf"
out=$("$ldqa" --db "$db" index --prune "$tmp/docs" 2>&1)
check "prune" contains "$out" "removed 1"

# error paths: clear message and the documented exit code
out=$("$ldqa" --db "$tmp/none/index.db" search anything 2>&1)
check "missing index exit 3" test $? -eq 3
check "missing index message" contains "$out" "no index at $tmp/none/index.db"
out=$("$ldqa" --db "$db" index 2>&1)
check "no path exit 2" test $? -eq 2
out=$("$ldqa" --db "$db" frobnicate 2>&1)
check "unknown command exit 2" test $? -eq 2
check "unknown command message" contains "$out" "unknown command 'frobnicate'"
out=$("$ldqa" --threads many list 2>&1)
check "bad option exit 2" test $? -eq 2
out=$("$ldqa" --db "$db" index "$tmp/nowhere" 2>&1)
check "missing path exit 3" test $? -eq 3
check "missing path message" contains "$out" "no such file or folder: $tmp/nowhere"
out=$("$ldqa" help index)
check "help index" contains "$out" "--prune"

# progress bar on a terminal (script gives the command a pty)
python3 - "$tmp/many" <<'PY'
import os, random, sys
os.makedirs(sys.argv[1])
for i in range(1, 301):
    random.seed(i)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    with open(os.path.join(sys.argv[1], f"f{i}.txt"), "w") as f:
        f.write(" ".join(random.choice(words) for _ in range(20000)))
PY
script -qec "'$ldqa' --db '$tmp/pty.db' index '$tmp/many'" "$tmp/pty.log" >/dev/null 2>&1
check "progress bar drawn" grep -q "files.*MB/s ETA" "$tmp/pty.log"
check "progress then summary" grep -q "indexed 300" "$tmp/pty.log"

# Ctrl-C during an index run: exit 130 (or 0 if it finished first), consistent index,
# and the same command finishes the job
rm -f "$tmp/int.db"*
"$ldqa" --db "$tmp/int.db" --threads 1 index "$tmp/many" >"$tmp/int.log" 2>&1 &
pid=$!
sleep 0.3
kill -INT $pid
wait $pid
code=$?
check "interrupt exit code" bash -c "[ $code -eq 130 ] || [ $code -eq 0 ]"
out=$("$ldqa" --db "$tmp/int.db" --json stats)
check "consistent after Ctrl-C" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["integrity"]=="ok"' "$out"
"$ldqa" --db "$tmp/int.db" index "$tmp/many" >/dev/null 2>&1
out=$("$ldqa" --db "$tmp/int.db" --json stats)
check "finished after re-run" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["documents"]==300, d' "$out"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
