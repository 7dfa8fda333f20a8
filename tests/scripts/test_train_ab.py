#!/usr/bin/env python3
"""bench/train_ab.py on the logs of the 2026-12-06 A/B (docs/training/): quick mode's
one-process runs (tab-ATTENTION-all, several phases each; the dense arm's a single
phase) and start mode's one-phase runs (tab-ATTENTION-mlm512). Each phase's arms must
land in one group and every pair present be compared: the dense arm's one-phase run was
once labelled apart from the others' "all pretrain-short" and compared with nothing. Each
loss-curve line says whether both runs were deterministic (the 2026-12-06 seed-12 logs
of train.py --deterministic).

    python3 tests/scripts/test_train_ab.py
"""
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOGS = {a: ROOT / f"docs/training/ab-2026-12-06-{a}-train_log.jsonl" for a in ("ldqa", "flex", "dense")}


def table(folders):
    run = subprocess.run([sys.executable, str(ROOT / "bench/train_ab.py")] + [str(f) for f in folders],
                         capture_output=True, text=True, check=True)
    return run.stdout


def expect(text, line):
    if line not in text:
        sys.exit(f"missing from the table: {line!r}\n{text}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        quick, start = [], []
        for attention, log in LOGS.items():
            folder = tmp / f"tab-{attention}-all"
            folder.mkdir()
            (folder / "train_log.jsonl").write_text(log.read_text())
            quick.append(folder)
            # start mode: the 512-token phase alone, in a folder named for it
            records = [json.loads(line) for line in log.read_text().splitlines() if line]
            one_phase = [r for r in records if r.get("phase") in ("start", "pretrain-short")]
            folder = tmp / f"tab-{attention}-mlm512"
            folder.mkdir()
            (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in one_phase))
            start.append(folder)

        text = table(quick)
        expect(text, "| all pretrain-short | dense | 300 | 1,079,353 |")
        expect(text, "| all pretrain-short | flex | 300 | 755,861 |")
        for pair, numbers in (("ldqa - flex", "max abs diff 0.2706, mean abs 0.1162, mean +0.1115"),
                              ("ldqa - dense", "max abs diff 0.0931, mean abs 0.0244, mean +0.0242"),
                              ("flex - dense", "max abs diff 0.2235, mean abs 0.0936, mean -0.0873")):
            expect(text, f"loss curves (NOT deterministic runs), {pair}, 31 common logged steps | | | | {numbers}")
        expect(text, "| all finetune | flex | 60 | 300,417 |")
        if "| all | dense" in text:
            sys.exit(f"the dense arm's one-phase run labelled apart from the others:\n{text}")

        text = table(start)  # one phase per folder: named by the folder alone
        expect(text, "| mlm512 | dense | 300 | 1,079,353 |")
        expect(text, "loss curves (NOT deterministic runs), ldqa - dense, 31 common logged steps")
        if "mlm512 pretrain-short" in text:
            sys.exit(f"a one-phase run labelled with its phase:\n{text}")
        # the deterministic A/B of seed 12: its start records say so
        det = []
        for attention, name in (("ldqa", "ldqa1"), ("flex", "flex"), ("dense", "dense")):
            folder = tmp / "det" / f"tab-{attention}-all"
            folder.mkdir(parents=True)
            (folder / "train_log.jsonl").write_text(
                (ROOT / f"docs/training/ab-2026-12-06-seed12-det-{name}-train_log.jsonl").read_text())
            det.append(folder)
        text = table(det)
        expect(text, "loss curves (deterministic runs), ldqa - flex, 31 common logged steps | | | | "
                     "max abs diff 0.0659, mean abs 0.0210, mean +0.0074")
        expect(text, "loss curves (deterministic runs), ldqa - dense, 30 common logged steps")
    print("train_ab: OK")


if __name__ == "__main__":
    main()
