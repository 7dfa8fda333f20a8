#!/usr/bin/env python3
"""Checks, in the SASS ptxas made, what produces each register A operand of every HGMMA.

Why: ptxas (nvcc 13.0, sm_90a) gave the registers holding Q's fragments, loaded once
before the loop and read by every step's S = Q K^T, to the step's P as well (the PTX kept
them apart): from the second key tile on, S was the previous P times K, and no test
on a CPU could see it (fixed in 497b5bb by loading A at every step). This script follows
the kernel's control flow back from each HGMMA to every instruction that can have written
its A registers, and holds them to the attention kernels' rule:

  a GEMM reading its B tile K-major with A in registers (none since 7520050, which reads
  every resident tile as A from shared memory) takes A from ldmatrix (LDSM) of that tile; one reading B MN-major
  (`.tnspB`: O += P V, dQ += dS K, dV += P^T dO, dK += dS^T Q) from the packs (F2FP) of
  the fp32 P or dS just computed (one with A in shared memory too, the forward's
  S = Q K^T and dK/dV's S^T = K Q^T and dP^T = V dO^T, has no A register). Anything else that can reach an A register (a flag
  load, a max, the previous step's P, the kernel's set-up along the path where a load
  once at step 0 is skipped) fails. So does a wgmma kernel that touches local memory
  (a register spill: a change to look at), beyond the budget SPILL_BUDGET grants one
  kernel for a measured reason.

The rule is stricter than correctness (a fragment loaded once and kept would be right if
ptxas kept it), which is the contract wgmma.cuh states.

  scripts/check-wgmma-sass.py --build BUILD_DIR [--nvdisasm PATH]
      compiles each sm_90a unit of attention/cuda (*_wgmma_*.cu) again to a cubin with
      the build's own command line (BUILD_DIR/compile_commands.json), disassembles it and
      checks it. Disassembler: --nvdisasm, else nvdisasm or cuobjdump beside nvcc. An
      nvdisasm older than the cubin's ELF ABI (CUDA 11.8's, from Debian's non-free
      nvidia-cuda-toolkit, which scripts/install-deps.sh fetches where nvcc has none)
      reads it once the header's ABI and architecture fields are written in the older
      form; the instructions are the hardware's encoding either way.
  scripts/check-wgmma-sass.py --sass FILE
      checks the text of `cuobjdump -sass OBJ` or `nvdisasm -c CUBIN`.
Exits 1 on any failure, or if no HGMMA was found.

Limits: writes are found from each instruction's first register operand after its
predicate outputs and its width (.64, .128, LDSM .4, CS2R, HGMMA's accumulators); the
writes of a subroutine behind CALL are not followed (the attention kernels call only
the integer-division helpers).
"""

import argparse
import os
import re
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_tools  # noqa: E402

INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
LABEL = re.compile(r"^\s*(\.L_x_\d+):")
BRANCH_TARGET = re.compile(r"`\((\.L_x_\d+)\)")


def width_of(opcode, insn):
    """How many consecutive registers an instruction writes from its first operand."""
    parts = opcode.split(".")
    op = parts[0]
    if op == "LDSM":
        return int(parts[-1]) if parts[-1] in ("1", "2", "4") else 1
    if op == "CS2R":
        return 1 if "32" in parts else 2
    if op in ("HMMA", "IMMA"):  # mma.sync: four f32/s32 accumulators, or two packed f16 pairs
        return 2 if "F16" in parts[2:3] else 4
    if op == "HGMMA":
        # HGMMA.64xNxK.F32.*: N/2 f32 accumulators per thread; F16 accumulators pack two.
        n = int(parts[1].split("x")[1])
        return n // 2 if parts[2] == "F32" else n // 4
    for p in parts[1:]:
        if p == "128":
            return 4
        if p == "64" or p == "WIDE":
            return 2
    if op in ("LDG", "LDS", "LD", "LDL", "LDC") and ".64" in insn:
        return 2
    return 1


# Opcodes whose first register operand is read, not written.
NO_DEST = {
    "STS", "STG", "ST", "STL", "RED", "ATOMS", "BRA", "EXIT", "BAR", "WARPGROUP", "RET",
    "CALL", "BSYNC", "BSSY", "NOP", "MEMBAR", "DEPBAR", "WARPSYNC", "ISETP", "FSETP",
    "HSETP2", "PLOP3", "LDGDEPBAR", "ARRIVES", "SYNCS", "UCGABAR_ARV",
    "UCGABAR_WAIT", "ERRBAR", "CCTL", "FENCE", "YIELD", "STSM", "BREAK", "BPT",
}  # (VOTE.ANY R5, PT, P0 writes R5; VOTE.ALL P0, P0 has no register operand: both as found)


def parse(text):
    """Each kernel of a disassembly (sass_tools.kernels_of) as its instructions (address,
    text) and where its labels point."""
    kernels = []
    for name, lines in sass_tools.kernels_of(text).items():
        k = {"name": name, "insns": [], "labels": {}}
        for line in lines:
            m = LABEL.match(line)
            if m:
                k["labels"][m.group(1)] = len(k["insns"])
                continue
            m = INSN.search(line)
            if m:
                k["insns"].append((m.group(1), m.group(2)))
        kernels.append(k)
    return kernels


def split_insn(text):
    pred = None
    if text.startswith("@"):
        pred, text = text.split(None, 1)
    op, _, operands = text.partition(" ")
    return pred, op, operands


def writes_of(text):
    """The registers an instruction may write (over-approximated where unsure)."""
    _, op, operands = split_insn(text)
    base = op.split(".")[0]
    if base in NO_DEST or base.startswith("U") or not operands:
        return []
    # The first register operand after any predicate outputs (SHFL.BFLY PT, R5, ...;
    # LOP3.LUT P0, R3, ...) is the destination; a memory operand first means none (LDGSTS).
    for operand in (o.strip() for o in operands.split(",")):
        if re.fullmatch(r"!?U?P(\d+|T)", operand):
            continue
        m = re.fullmatch(r"R(\d+)", operand)
        if not m:
            return []
        r = int(m.group(1))
        return list(range(r, r + width_of(op, text)))
    return []


def successors(k, i):
    pred, op, operands = split_insn(k["insns"][i][1])
    base = op.split(".")[0]
    out = []
    if base == "BRA":
        t = BRANCH_TARGET.search(operands)
        if t and t.group(1) in k["labels"]:
            out.append(k["labels"][t.group(1)])
        if pred is None:
            return out
    if base in ("EXIT", "RET") and pred is None:
        return out
    if i + 1 < len(k["insns"]):
        out.append(i + 1)
    return out


def reaching_writers(k, preds, at, reg):
    """Instructions that write reg and reach instruction `at` without another write."""
    found, seen, stack = set(), set(), list(preds[at])
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        text = k["insns"][i][1]
        if reg in writes_of(text):
            found.add(i)
            if not text.startswith("@"):
                continue  # an unpredicated write ends this path
        stack.extend(preds[i])
    return found


MOVE = re.compile(r"(?:IMAD\.MOV(?:\.U32)?\s+R\d+,\s*RZ,\s*RZ,|MOV\s+R\d+,)\s*R(\d+)\s*;?\s*$")


def producers(k, preds, at, reg, depth=4):
    """reaching_writers, seeing through register copies (MOV, IMAD.MOV of a register):
    ptxas copies a pack into the HGMMA's A registers when the packed value is read
    elsewhere too (the dK/dV kernel's P), and the copy's source is what counts."""
    found = set()
    for w in reaching_writers(k, preds, at, reg):
        pred, op, operands = split_insn(k["insns"][w][1])
        m = MOVE.search(f"{op} {operands}")
        if m and depth > 0 and pred is None:
            found |= producers(k, preds, w, int(m.group(1)), depth - 1)
        else:
            found.add(w)
    return found


# Local-memory accesses (STL/LDL instructions) a kernel may have, by a part of its name,
# each for a reason measured on the device (docs/bench/attention.md):
# - dq_all_kernel: four CTAs per SM need 128 registers where it would use 143; ptxas
#   keeps a few set-up values in local memory (12 accesses in the bf16 kernel: stores
#   before each branch's loop, loads after it and two in the step's copy code). The
#   backward is 3-4 % faster on an H100 than with three CTAs and no spill.
# - dkdv_kernel: three CTAs per SM need 168 registers; the bf16 key-tile kernel keeps
#   four set-up values in local memory (9 accesses, three loads per step at the top of
#   its loop), the gathered one and fp16 none. Two CTAs per SM were ~14 % slower.
SPILL_BUDGET = {"dq_all_kernel": 16, "dkdv_kernel": 12}


def spill_budget(name):
    return max((n for part, n in SPILL_BUDGET.items() if part in name), default=0)


def check(kernels, expect_kmajor, expect_mnmajor):
    failures, gemm_count = 0, 0
    for k in kernels:
        preds = defaultdict(list)
        for i in range(len(k["insns"])):
            for s in successors(k, i):
                preds[s].append(i)
        gemms = [i for i, (_, t) in enumerate(k["insns"]) if split_insn(t)[1].startswith("HGMMA")]
        if not gemms:
            continue
        gemm_count += len(gemms)
        # Local memory: register spills, a change to look at rather than a cost to accept
        # silently, except within a budget granted for a measured reason (SPILL_BUDGET).
        spills = [a for a, t in k["insns"] if re.search(r"\b(STL|LDL)\b", t)]
        budget = spill_budget(k["name"])
        print(f"{k['name']}: {len(gemms)} HGMMA, {len(spills)} local-memory accesses (budget {budget})")
        if len(spills) > budget:
            print(f"  spills at {', '.join(spills[:8])}{'...' if len(spills) > 8 else ''}   <-- UNEXPECTED")
            failures += 1
        for i in gemms:
            addr, text = k["insns"][i]
            operands = split_insn(text)[2].split(",")
            m = re.fullmatch(r"\s*R(\d+)\s*", operands[1])
            if not m:
                continue  # A from shared memory (a descriptor)
            a = int(m.group(1))
            by_op = defaultdict(set)
            for reg in range(a, a + 4):
                writers = producers(k, preds, i, reg)
                if not writers:
                    by_op["<never written>"].add(reg)
                for w in writers:
                    by_op[split_insn(k["insns"][w][1])[1].split(".")[0]].add(k["insns"][w][0])
            expect = expect_mnmajor if ".tnspB" in text else expect_kmajor
            bad = [op for op in by_op if op not in expect]
            failures += bool(bad)
            summary = "; ".join(f"{op} at {','.join(sorted(v, key=str)[:4])}"
                                f"{'...' if len(v) > 4 else ''}" for op, v in sorted(by_op.items()))
            print(f"  {addr} {text}\n      A R{a}-R{a + 3} from: {summary}{'   <-- UNEXPECTED' if bad else ''}")
    if gemm_count == 0:
        print("no HGMMA found: not the SASS of an sm_90a wgmma kernel?")
        return 1
    print(f"{gemm_count} HGMMA; {failures} failures (an unexpected A producer, or a kernel that spills)")
    return failures


def sass_of_build(build, tool):
    units = sass_tools.units_of(build, r"attention/cuda/[^/]*_wgmma_[^/]*\.cu$")
    if not units:
        sys.exit(f"{build}: no sm_90a attention unit in compile_commands.json (built without LDQA_CUDA_SM90A?)")
    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        for u in units:
            cubin = os.path.join(tmp, os.path.basename(u["file"]) + ".cubin")
            sass_tools.compile_cubin(u, cubin)
            print(f"== {os.path.relpath(u['file'])}")
            texts.append(sass_tools.disassemble(cubin, tool))
    return "\n".join(texts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--build", help="a configured and built CUDA tree")
    what.add_argument("--sass", help="disassembled SASS text")
    ap.add_argument("--nvdisasm", help="the disassembler to use with --build")
    ap.add_argument("--kmajor", default="LDSM", help="opcodes allowed to produce A when B is K-major")
    ap.add_argument("--mnmajor", default="F2FP", help="opcodes allowed to produce A when B is MN-major")
    args = ap.parse_args()
    if args.sass:
        with open(args.sass) as f:
            text = f.read()
    else:
        tool = args.nvdisasm or sass_tools.find_disassembler(args.build)
        if not tool:
            sys.exit("no nvdisasm or cuobjdump beside nvcc or on PATH: pass --nvdisasm")
        text = sass_of_build(args.build, tool)
    failures = check(parse(text), set(args.kmajor.split(",")), set(args.mnmajor.split(",")))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
