#!/usr/bin/env python3
"""scripts/sass_tools.py and sass-diff.py's label numbering on made-up text: ptxas'
register and spill report per kernel, a disassembly split into kernels, and two kernels
that differ only by the cubin-wide numbers of their labels compared equal (and a real
difference not). No CUDA toolkit needed.

    python3 tests/scripts/test_sass_tools.py
"""
import importlib.util
import pathlib
import sys

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import sass_tools  # noqa: E402

spec = importlib.util.spec_from_file_location("sass_diff", SCRIPTS / "sass-diff.py")
sass_diff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_diff)

REPORT = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z1av' for 'sm_90'
ptxas info    : Function properties for _Z1av
    8 bytes stack frame, 8 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 8 bytes cumulative stack size
ptxas info    : Compiling entry function '_Z1bv' for 'sm_90'
ptxas info    : Function properties for _Z1bv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 31 registers, used 0 barriers
"""

SASS = """
.text._Z1av:
        /*0000*/                   ISETP.NE.AND P0, PT, R2, RZ, PT ;
.L_x_7:
        /*0010*/               @P0 BRA `(.L_x_7) ;
.text._Z1bv:
        /*0000*/                   EXIT ;
"""


def main():
    assert sass_tools.ptxas_usage(REPORT) == {"_Z1av": (128, 8, 16), "_Z1bv": (31, 0, 0)}
    kernels = sass_tools.kernels_of(SASS)
    assert list(kernels) == ["_Z1av", "_Z1bv"] and len(kernels["_Z1av"]) == 3, kernels
    renumbered = [line.replace("_x_7", "_x_42") for line in kernels["_Z1av"]]
    assert sass_diff.normalized(renumbered) == sass_diff.normalized(kernels["_Z1av"])
    changed = [line.replace("R2,", "R3,") for line in kernels["_Z1av"]]
    assert sass_diff.normalized(changed) != sass_diff.normalized(kernels["_Z1av"])
    assert sass_diff.instructions(kernels["_Z1av"]) == ["ISETP", "BRA"]
    print("sass_tools: OK")


if __name__ == "__main__":
    main()
