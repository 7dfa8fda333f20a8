#!/usr/bin/env python3
"""Compares the machine code of the CUDA units between a git revision and the working
tree, kernel by kernel: identical SASS, or how it differs (instructions, registers,
spills). No GPU needed.

What it is for: a change to the kernels made without a device. A refactor whose SASS is
identical cannot have changed what runs (77b6d41 was checked so); a change that is not
shows what it costs in registers and spills before anything is timed.

    scripts/sass-diff.py --build build-cuda [--base HEAD] [--units REGEX] [--arch sm_90]

Each unit (default: attention/cuda/*.cu) is compiled with the build's own command line
(BUILD/compile_commands.json) for one architecture (default sm_90; the sm_90a units
always for sm_90a), once from `git archive BASE` and once from the working tree, then
disassembled (scripts/sass_tools.py says with what). Exits 1 if any kernel differs.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_tools  # noqa: E402

OPCODE = re.compile(r"/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")


LABEL = re.compile(r"\.L_x_\d+")


def normalized(lines):
    """A kernel's lines with its branch labels numbered from 0 in order of appearance: the
    disassembler numbers them across the whole cubin, so a kernel after a changed one
    would differ by its label names alone."""
    names = {}
    return [LABEL.sub(lambda m: names.setdefault(m.group(0), f".L_{len(names)}"), line) for line in lines]


def instructions(lines):
    return [m.group(1).split(".")[0] for m in (OPCODE.search(line) for line in lines) if m]


def build_side(units, tool, arch, root, tmp, tag):
    sass, usage = {}, {}
    for u in units:
        unit_arch = "sm_90a" if "_wgmma_" in u["file"] else arch
        cubin = os.path.join(tmp, f"{tag}-{os.path.basename(u['file'])}.cubin")
        usage.update(sass_tools.ptxas_usage(sass_tools.compile_cubin(u, cubin, unit_arch, root)))
        for name, lines in sass_tools.kernels_of(sass_tools.disassemble(cubin, tool)).items():
            sass[(os.path.basename(u["file"]), name)] = normalized(lines)
    return sass, usage


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="a configured CUDA tree (its compile_commands.json)")
    ap.add_argument("--base", default="HEAD", help="the git revision to compare with")
    ap.add_argument("--units", default=r"attention/cuda/[^/]*\.cu$", help="which units (a regex on the path)")
    ap.add_argument("--arch", default="sm_90", help="the architecture of the units built for several")
    ap.add_argument("--nvdisasm", help="the disassembler (default: sass_tools.find_disassembler)")
    args = ap.parse_args()
    tool = args.nvdisasm or sass_tools.find_disassembler(args.build)
    if not tool:
        sys.exit("no nvdisasm or cuobjdump found: run scripts/install-deps.sh or pass --nvdisasm")
    units = sass_tools.units_of(args.build, args.units)
    if not units:
        sys.exit(f"no unit of {args.build}/compile_commands.json matches {args.units}")
    with tempfile.TemporaryDirectory() as tmp:
        base_root = os.path.join(tmp, "base")
        os.makedirs(base_root)
        archive = subprocess.run(["git", "-C", sass_tools.ROOT, "archive", args.base], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base_root], input=archive, check=True)
        before, before_usage = build_side(units, tool, args.arch, base_root, tmp, "base")
        after, after_usage = build_side(units, tool, args.arch, None, tmp, "tree")
    differing = 0
    for key in sorted(set(before) | set(after)):
        unit, name = key
        if key not in before or key not in after:
            print(f"{unit} {name}: only {'after' if key in after else 'before'}")
            differing += 1
            continue
        if before[key] == after[key]:
            print(f"{unit} {name}: identical ({len(instructions(after[key]))} instructions)")
            continue
        differing += 1
        b, a = instructions(before[key]), instructions(after[key])
        ub, ua = before_usage.get(name, (0, 0, 0)), after_usage.get(name, (0, 0, 0))
        print(f"{unit} {name}: DIFFERS: {len(b)} -> {len(a)} instructions, registers {ub[0]} -> {ua[0]}, "
              f"spill stores/loads {ub[1]}/{ub[2]} -> {ua[1]}/{ua[2]} bytes")
    print(f"{len(set(before) | set(after))} kernels, {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
