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

# questions: the reader's answers with their sources (offsets into the document's text)
out=$("$ldqa" --db "$db" --json ask "When was the lighthouse built?")
check "ask exit 0" test $? -eq 0
check "ask txt answer and offsets" python3 - "$out" "$tmp/docs/lighthouse.txt" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); a = d["answers"][0]
text = open(sys.argv[2], encoding="utf-8").read()
assert a["text"] == "1871" and a["path"] == sys.argv[2], a
assert text[a["char_start"]:a["char_end"]] == "1871", (a, text[a["char_start"]:a["char_end"]])
assert a["page"] == 0 and "built in" in a["before"], a
PY
out=$("$ldqa" --db "$db" --json ask -k 1 "Who is the chief executive of the ferry company?")
check "ask pdf answer and page" python3 -c 'import json,sys; a=json.loads(sys.argv[1])["answers"][0]; assert a["text"]=="Ingrid Aasen" and a["page"]==2 and a["path"].endswith("annual-report.pdf"), a' "$out"
out=$("$ldqa" --db "$db" --json ask -k 2 "In which year was the museum founded?")
check "ask html answer" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); a=d["answers"][0]; assert a["text"]=="1923" and a["path"].endswith("museum.html") and len(d["answers"])<=2, d' "$out"
out=$("$ldqa" --db "$db" ask "How much water does the tank hold?")
check "ask text output" contains "$out" "[[1.8 litres]]"
check "ask text source" contains "$out" "espresso-machine.md  chars"
out=$("$ldqa" --db "$db" ask "What is the capital of Peru?" 2>&1)
check "no answer exit 4" test $? -eq 4
check "no answer message" contains "$out" "no answer found"
out=$("$ldqa" --db "$db" ask --min-score 100 "When was the lighthouse built?" 2>&1)
check "threshold withholds" test $? -eq 4
# a reading budget of one passage still finds the answer in the best passage
out=$("$ldqa" --db "$db" --json ask -k 1 --read-tokens 64 "Who is the chief executive of the ferry company?")
check "read-tokens: best passage kept" python3 -c 'import json,sys; a=json.loads(sys.argv[1])["answers"][0]; assert a["text"]=="Ingrid Aasen", a' "$out"
out=$("$ldqa" --db "$db" ask --read-tokens -2 "When?" 2>&1)
check "read-tokens < -1 refused" contains "$out" "read_tokens (-2) must be >= 0"

# batch: text and JSONL questions, JSONL answers, resumable
printf 'When was the lighthouse built?\n\n{"id": "ceo", "question": "Who is the chief executive?"}\nWhat is the capital of Peru?\n' >"$tmp/q.txt"
"$ldqa" --db "$db" -q batch "$tmp/q.txt" >"$tmp/a.jsonl"
check "batch exit 0" test $? -eq 0
check "batch jsonl" python3 - "$tmp/a.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["id"] for r in rows] == ["1", "ceo", "4"], rows
assert rows[0]["answers"][0]["text"] == "1871" and rows[1]["answers"][0]["text"] == "Ingrid Aasen"
assert rows[2]["answers"] == [] and rows[2]["question"] == "What is the capital of Peru?"
PY
head -n 1 "$tmp/a.jsonl" >"$tmp/partial.jsonl"
out=$("$ldqa" --db "$db" batch --output "$tmp/partial.jsonl" --skip-done "$tmp/q.txt" 2>&1)
check "batch resumes" contains "$out" "asked 2, skipped 1"
check "batch resumed file" test "$(wc -l <"$tmp/partial.jsonl")" -eq 3
out=$("$ldqa" --db "$db" batch --skip-done "$tmp/q.txt" 2>&1)
check "skip-done needs output" test $? -eq 2

# eval on a small SQuAD-format file made from the samples
python3 - "$tmp/docs/lighthouse.txt" "$tmp/squad.json" <<'PY'
import json, sys
paras = [p for p in open(sys.argv[1], encoding="utf-8").read().split("\n\n") if p.strip()][1:]
# Several references per question where more than one span is right, as SQuAD's
# annotators give them: EM counts the best match.
qas = [("When was the lighthouse built?", ["1871"]), ("How tall is the tower?", ["31 metres", "31 metres tall"]),
       ("Who was the first keeper?", ["Thomas Marsh"])]
context = " ".join(paras[:3])
assert all(context.find(a) >= 0 for _, refs in qas for a in refs)
data = {"data": [{"title": "Harrow Point", "paragraphs": [
    {"context": context, "qas": [
        {"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.find(a)} for a in refs]}
        for i, (q, refs) in enumerate(qas)]}]}]}
json.dump(data, open(sys.argv[2], "w"))
PY
out=$("$ldqa" --json eval --setting paragraph "$tmp/squad.json")
check "eval paragraph" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["questions"]==3 and d["f1"]>=60 and d["setting"]=="paragraph", d' "$out"
out=$("$ldqa" --json eval --setting corpus --limit 2 --predictions "$tmp/pred.json" "$tmp/squad.json")
check "eval corpus" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["questions"]==2 and d["articles"]==1 and d["em"]==100 and d["p95_ms"]>=d["p50_ms"]>0 and d["reader_tokens_mean"]>0 and d["p50_ms"]>=d["reader_p50_ms"]>0, d' "$out"
# --limit spreads the questions over the file: 2 of 3 are the first and the last
check "eval predictions" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["q0"]=="1871" and d["q2"]=="Thomas Marsh" and len(d)==2, d' "$tmp/pred.json"
out=$("$ldqa" eval --setting chapter "$tmp/squad.json" 2>&1)
check "eval bad setting exit 2" test $? -eq 2

# calibrate: a second article gives each question a paragraph that cannot answer it
python3 - "$tmp/squad.json" "$tmp/squad2.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["data"].append({"title": "Espresso", "paragraphs": [{"context": "The Corvo 3 tank holds 1.8 litres of water.",
    "qas": [{"id": "e1", "question": "How much water does the tank hold?",
             "answers": [{"text": "1.8 litres", "answer_start": 23}]}]}]})
json.dump(d, open(sys.argv[2], "w"))
PY
out=$("$ldqa" calibrate --questions 4 -o "$tmp/calibration.json" "$tmp/squad2.json" 2>&1)
check "calibrate exit 0" test $? -eq 0
# (8 cases: each question against its own paragraph and one of the other article; no
# article has a second paragraph for a hard negative)
check "calibrate file" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["questions"]==4 and d["articles"]==2 and d["cases"]==8 and 0.5<=d["accuracy"]<=1 and "no_answer_threshold" in d, d' "$tmp/calibration.json"
# 2 of the 4 questions: spread over the file, so the second article's one is among them
# (the first two would both be about the first article)
out=$("$ldqa" calibrate --questions 2 "$tmp/squad2.json" 2>&1)
check "calibrate spread" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["questions"]==2 and d["articles"]==2, d' "$out"
out=$("$ldqa" calibrate "$tmp/squad.json" 2>&1)
check "calibrate one article exit 3" test $? -eq 3
check "calibrate one article message" contains "$out" "holds one article"

# chat on a terminal: two questions, history, Ctrl-D
python3 - "$ldqa" "$db" >"$tmp/chat.log" 2>&1 <<'PY'
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--db", sys.argv[2], "chat", "-k", "1"])
out = b""
def read_until(marker, timeout=120):
    global out
    end = time.time() + timeout
    while marker not in out and time.time() < end:
        try:
            out += os.read(fd, 4096)
        except OSError:
            break
for line in (b"How tall is the \\\r", b"tower?\r", b"Who was the first keeper?\r", b":history\r"):
    read_until(b"? ")
    out = out  # the prompt, then the question
    os.write(fd, line)
    time.sleep(0.2)
read_until(b"2  Who was the first keeper?")
os.write(fd, b"\x04")
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
print("\nEXIT", os.waitstatus_to_exitcode(status))
PY
chat=$(cat "$tmp/chat.log")
check "chat multi-line question" contains "$chat" "31 metres"
check "chat second question" contains "$chat" "Thomas Marsh"
check "chat history" contains "$chat" "1  How tall is the  tower?"
check "chat Ctrl-D exit 0" contains "$chat" "EXIT 0"

# error paths of the reader: model, device, empty index
out=$("$ldqa" --db "$db" --model "$tmp/nomodel" ask "When?" 2>&1)
check "missing model exit 3" test $? -eq 3
check "missing model message" contains "$out" "model config not found: $tmp/nomodel/config.json"
mkdir -p "$tmp/badmodel"
for f in "$(dirname "$ldqa")"/../../models/ldqa-small/*; do ln -s "$(realpath "$f")" "$tmp/badmodel/"; done
rm "$tmp/badmodel/model-00002-of-00004.safetensors"
head -c 1000 "$(realpath "$(dirname "$ldqa")"/../../models/ldqa-small/model-00002-of-00004.safetensors)" \
  >"$tmp/badmodel/model-00002-of-00004.safetensors"
out=$("$ldqa" --db "$db" --model "$tmp/badmodel" ask "When was the lighthouse built?" 2>&1)
check "corrupt model exit 3" test $? -eq 3
check "corrupt model message" contains "$out" "$tmp/badmodel/model-00002-of-00004.safetensors"
out=$("$ldqa" --db "$db" --device tpu ask "When?" 2>&1)
check "bad device exit 2" test $? -eq 2
mkdir -p "$tmp/empty"
"$ldqa" --db "$tmp/empty.db" -q index "$tmp/empty"
out=$("$ldqa" --db "$tmp/empty.db" ask "When?" 2>&1)
check "empty index exit 3" test $? -eq 3
check "empty index message" contains "$out" "holds no documents"
out=$("$ldqa" --db "$tmp/nowhere/x.db" ask "When?" 2>&1)
check "missing db exit 3" test $? -eq 3
check "missing db message" contains "$out" "no index at $tmp/nowhere/x.db"
out=$("$ldqa" help ask)
check "help ask" contains "$out" "--min-score"

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


# ---------------------------------------------------------------- a hostile folder
# Deep and unclosed HTML, a large file that changes, a link out of the folder, escape
# bytes in a document and in a file name, a name that is not UTF-8, gzip, UTF-16, a
# corrupt PDF: indexed to completion, every problem reported.
hostile="$tmp/hostile"
mkdir -p "$hostile/docs" "$hostile/outside"
echo "root:x:0:0:quartermaster:/root:/bin/bash" >"$hostile/outside/passwd"
ln -s "$hostile/outside" "$hostile/docs/etc"
python3 - "$hostile/docs" <<'PY'
import gzip, os, random, sys
d = sys.argv[1]
open(os.path.join(d, "deep.html"), "w").write("<html><body>" + "<div>" * 100000 + "the deep note")
with open(os.path.join(d, "unclosed.html"), "w") as f:
    f.write("<html><body>")
    i = 0
    while f.tell() < 1 << 20:
        f.write(f'<b id="{i}"><font color=red>word{i}<p>')
        i += 1
random.seed(5)
words = ["harbour", "keeper", "lamp", "storm", "rope", "tide", "gull", "anchor"]
with open(os.path.join(d, "big.txt"), "w") as f:
    for p in range(40000):
        f.write(" ".join(random.choice(words) for _ in range(30)) + "\n\n")
open(os.path.join(d, "escape.txt"), "w").write("\x1b]0;owned\x07\x1b[2J The alarm code is 4711.\n")
open(os.path.join(d, "name-\x1b[31mred.txt"), "w").write("A file named to colour the terminal: periwinkle.\n")
open(os.fsdecode(os.path.join(os.fsencode(d), b"latin-na\xefve.txt")), "w").write("A Latin-1 name: marzipan.\n")
open(os.path.join(d, "README.gz"), "wb").write(gzip.compress(b"Gzipped notes mention a lighthouse called Farola.\n"))
open(os.path.join(d, "AUTHORS"), "w").write("Written by Ingeborg Vang.\n")
open(os.path.join(d, "utf16.txt"), "wb").write("\ufeffThe ferry is called Solveig.\n".encode("utf-16-le"))
open(os.path.join(d, "corrupt.pdf"), "wb").write(b"%PDF-1.4\nbroken beyond repair")
PY
out=$(timeout 300 "$ldqa" --db "$hostile/index.db" index "$hostile/docs" 2>&1)
code=$?
check "hostile folder indexed to completion (exit 1: the corrupt PDF)" test $code -eq 1
check "hostile: corrupt PDF reported" contains "$out" "FAILED $hostile/docs/corrupt.pdf"
check "hostile: link out reported" contains "$out" "outside the indexed folders"
check "hostile: HTML stripped noted" contains "$out" "read with the tags stripped"
check "hostile: gzip noted" contains "$out" "read through gzip"
check "hostile: UTF-16 noted" contains "$out" "read as utf-16le"
check "hostile: no escape byte in the summary" bash -c "! grep -q $'\x1b' <<<\"\$1\"" _ "$out"
out=$("$ldqa" --db "$hostile/index.db" search quartermaster 2>&1)
check "hostile: nothing from outside the folder" contains "$out" "no matching passage"
for word in "the deep note" word1000 Farola Ingeborg Solveig periwinkle marzipan; do
  out=$("$ldqa" --db "$hostile/index.db" --json search "$word")
  check "hostile: '$word' found" python3 -c 'import json,sys; assert json.loads(sys.argv[1]), sys.argv[2]' "$out" "$word"
done
out=$("$ldqa" --db "$hostile/index.db" search "alarm code")
check "hostile: search shows the text" contains "$out" "4711"
check "hostile: search output carries no escape byte" bash -c "! grep -q $'\x1b' <<<\"\$1\"" _ "$out"
out=$("$ldqa" --db "$hostile/index.db" list)
check "hostile: list carries no escape byte" bash -c "! grep -q $'\x1b' <<<\"\$1\"" _ "$out"
out=$("$ldqa" --db "$hostile/index.db" --json list)
check "hostile: --json list is JSON (a name that is not UTF-8)" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert any("latin-na" in x["path"] for x in d)' "$out"
out=$("$ldqa" --db "$hostile/index.db" --json ask --min-score=-inf "What is the alarm code?")
check "hostile: --json ask is JSON" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out"
# the large file changes: re-indexed in bounded time; the corrupt PDF fails again (exit 1)
echo "storm lantern epilogue" >>"$hostile/docs/big.txt"
out=$(timeout 120 "$ldqa" --db "$hostile/index.db" index "$hostile/docs" 2>&1)
code=$?
check "hostile: changed large file re-indexed, failed file reported again" test $code -eq 1
check "hostile: re-index summary" contains "$out" "indexed 1,"
# a deleted file leaves the index without --prune
rm "$hostile/docs/AUTHORS"
out=$("$ldqa" --db "$hostile/index.db" index "$hostile/docs" 2>&1)
check "hostile: deleted file removed by default" contains "$out" "removed 1"
out=$("$ldqa" --db "$hostile/index.db" search Ingeborg 2>&1)
check "hostile: deleted file not searchable" contains "$out" "no matching passage"

# ---------------------------------------------------------- broken models, calibration
model_src="$(realpath "$(dirname "$ldqa")"/../../models/ldqa-base)"
make_model() {  # make_model DIR: the bundled model, linked file by file
  mkdir -p "$1"
  for f in "$model_src"/*; do ln -sf "$f" "$1/"; done
}
make_model "$tmp/eps"
rm "$tmp/eps/config.json"
sed 's/"layer_norm_eps": 1e-05/"layer_norm_eps": -1e-05/' "$model_src/config.json" >"$tmp/eps/config.json"
out=$("$ldqa" --db "$db" --model "$tmp/eps" ask "When was the lighthouse built?" 2>&1)
check "negative layer_norm_eps exit 3" test $? -eq 3
check "negative layer_norm_eps named" contains "$out" "layer_norm_eps"
make_model "$tmp/nocal"
rm "$tmp/nocal/calibration.json"
out=$("$ldqa" --db "$db" --model "$tmp/nocal" ask "When was the lighthouse built?" 2>&1)
check "missing calibration exit 3" test $? -eq 3
check "missing calibration says what to do" contains "$out" "ldqa calibrate"
out=$("$ldqa" --db "$db" --model "$tmp/nocal" --json ask --min-score=-inf "When was the lighthouse built?" 2>&1)
check "missing calibration, explicit threshold" python3 -c 'import json,sys; assert json.loads(sys.argv[1])["answers"][0]["text"]=="1871"' "$out"

# ------------------------------------------------------------ errors a user can act on
cp "$db" "$tmp/damaged.db"
python3 - "$tmp/damaged.db" <<'PY'
import sys
raw = bytearray(open(sys.argv[1], "rb").read())
raw[100:4096] = b"\xAB" * (4096 - 100)  # the schema page
open(sys.argv[1], "wb").write(raw)
PY
out=$("$ldqa" --db "$tmp/damaged.db" list 2>&1)
check "damaged index exit 3" test $? -eq 3
check "damaged index says what to do" contains "$out" "is damaged or is not an ldqa index"
check "damaged index: SQLite's words only with -v" bash -c "! grep -q 'SQLite:' <<<\"\$1\"" _ "$out"
out=$("$ldqa" -v --db "$tmp/damaged.db" list 2>&1)
check "damaged index detail with -v" contains "$out" "detail: SQLite"
printf 'When?\n{"id": "x", "text": "no question field"}\n' >"$tmp/bad.jsonl"
out=$("$ldqa" --db "$db" batch "$tmp/bad.jsonl" 2>&1)
check "malformed JSONL exit 3" test $? -eq 3
check "malformed JSONL names the line" contains "$out" "$tmp/bad.jsonl:2: the object has no \"question\" string"
# two first runs on a new index at once
"$ldqa" --db "$tmp/twice.db" -q index "$tmp/docs" & first=$!
"$ldqa" --db "$tmp/twice.db" -q index "$tmp/docs" & second=$!
wait $first; code1=$?
wait $second; code2=$?
check "two first index runs both succeed" test "$code1$code2" = "00"
# an index on read-only media: searched, listed, asked (an unprivileged user when root)
mkdir -p "$tmp/ro" && cp "$db" "$tmp/ro/index.db" && rm -f "$tmp/ro/index.db-"*
chmod 0444 "$tmp/ro/index.db" && chmod 0555 "$tmp/ro" && chmod 0755 "$tmp"
as_reader=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  as_reader=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
out=$("${as_reader[@]}" "$ldqa" --db "$tmp/ro/index.db" search lighthouse 2>&1)
check "read-only index searched" contains "$out" "lighthouse.txt"
chmod 0755 "$tmp/ro"


# several readers: the same answers, in the same order, as one
printf 'When was the lighthouse built?\nWho is the chief executive?\nWhat is the capital of Peru?\nHow tall is the tower?\n' >"$tmp/q4.txt"
"$ldqa" --db "$db" -q batch "$tmp/q4.txt" >"$tmp/one.jsonl"
"$ldqa" --db "$db" -q batch --devices cpu,cpu,cpu "$tmp/q4.txt" >"$tmp/three.jsonl"
check "batch --devices: same answers in order" python3 - "$tmp/one.jsonl" "$tmp/three.jsonl" <<'PY'
import json, sys
strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_ms")}
a = [strip(json.loads(l)) for l in open(sys.argv[1])]
b = [strip(json.loads(l)) for l in open(sys.argv[2])]
assert len(a) == 4 and a == b, (a, b)
PY
out1=$("$ldqa" --json eval --setting paragraph --predictions "$tmp/p1.json" "$tmp/squad2.json")
out3=$("$ldqa" --json eval --setting paragraph --devices cpu,cpu --predictions "$tmp/p3.json" "$tmp/squad2.json")
check "eval --devices: same scores and predictions" python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a["f1"]==b["f1"] and json.load(open(sys.argv[3]))==json.load(open(sys.argv[4])), (a,b)' "$out1" "$out3" "$tmp/p1.json" "$tmp/p3.json"
out=$("$ldqa" --db "$db" batch --devices tpu "$tmp/q4.txt" 2>&1)
check "bad --devices exit 2" test $? -eq 2

# ------------------------------------------------------------------ CLI rough edges
out=$("$ldqa" help stats)
check "help stats" contains "$out" "usage: ldqa stats"
out=$("$ldqa" help remove)
check "help remove" contains "$out" "usage: ldqa remove PATH..."
out=$("$ldqa" help frobnicate 2>&1)
check "help on an unknown command exit 2" test $? -eq 2
out=$("$ldqa" --db "$db" --json search -- "-lighthouse keeper" 2>&1)
check "a question starting with - after --" python3 -c 'import json,sys; assert json.loads(sys.argv[1])[0]["path"].endswith("lighthouse.txt")' "$out"
"$ldqa" --db "$db" -q ask -- "-5 or 1871: when was the lighthouse built?" >/dev/null 2>&1
check "ask takes it too (no usage error)" test $? -ne 2
out=$(printf 'When was the lighthouse built?\n:quit\nWho was the first keeper?\n' | "$ldqa" --db "$db" chat 2>&1)
check "chat :quit leaves" bash -c "contains() { grep -qF -- \"\$2\" <<<\"\$1\"; }; contains \"\$1\" 1871 && ! contains \"\$1\" 'Thomas Marsh'" _ "$out"
out=$("$ldqa" --db "$db" --json remove "$tmp/docs/lighthouse.txt" "$tmp/docs/nothing.txt")
check "--json remove" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert len(d["removed"])==1 and len(d["not_in_index"])==1, d' "$out"
python3 - "$tmp/covid.json" <<'PY'
import json, sys
ctx = "The incubation period of the virus is about five days. Masks reduce transmission."
data = {"data": [{"paragraphs": [{"context": ctx, "qas": [
    {"id": 1, "question": "How long is the incubation period?", "answers": [{"text": "about five days", "answer_start": 37}]}]}]}]}
json.dump(data, open(sys.argv[1], "w"))
PY
out=$("$ldqa" --json eval --setting paragraph "$tmp/covid.json" 2>&1)
check "eval: numeric ids and no title (COVID-QA's file)" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["questions"]==1, d' "$out"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
