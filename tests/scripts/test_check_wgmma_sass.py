#!/usr/bin/env python3
"""scripts/check-wgmma-sass.py on small made-up SASS: it passes a kernel whose HGMMA A
operands come from the same step's ldmatrix and packs (or register copies of the packs),
and fails the three hazards it exists for: the previous step's P reaching S = Q K^T's A
around the loop's back edge (what ptxas did, 497b5bb), a load kept from step 0 only
(reached from the kernel's entry along the path that skips it), and a spill beyond the
kernel's budget (none, or SPILL_BUDGET's). No GPU or CUDA toolkit needed.

    python3 tests/scripts/test_check_wgmma_sass.py
"""
import pathlib
import subprocess
import sys
import tempfile

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "check-wgmma-sass.py"

# One step of a forward loop: Q's fragments by ldmatrix, S = Q K^T, P packed, O += P V.
STEP = """
        /*00f0*/                   {q_before}
.L_x_1:
        /*0100*/                   {q_load}
        /*0110*/                   WARPGROUP.ARRIVE ;
        /*0120*/                   HGMMA.64x64x16.F32.BF16 R24, R88, gdesc [UR24], RZ, !UPT, gsb0 ;
        /*0130*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
        /*0140*/                   F2FP.BF16.F32.PACK_AB R{p0}, R25, R24 ;
        /*0150*/                   F2FP.BF16.F32.PACK_AB R{p1}, R27, R26 ;
        /*0160*/                   F2FP.BF16.F32.PACK_AB R{p2}, R29, R28 ;
        /*0170*/                   F2FP.BF16.F32.PACK_AB R{p3}, R31, R30 ;
        /*0180*/                   {spill}
{copies}
        /*0190*/                   HGMMA.64x64x16.F32.BF16 R56, R{a}, gdesc [UR20].tnspB, R56, gsb0 ;
        /*01a0*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
        /*01b0*/                   ISETP.NE.AND P0, PT, R2, RZ, PT ;
        /*01c0*/               @P0 BRA `(.L_x_1) ;
        /*01d0*/                   EXIT ;
"""


LDSM_Q = "LDSM.16.M88.4 R88, [R22] ;"


def kernel(q_before="NOP ;", q_load=LDSM_Q, p_first=100, spill="NOP ;", name="kern", copy_sources=None):
    """copy_sources: registers that MOV copies into R120-R123, which P V then reads as A
    instead of the packs' own registers."""
    p = [p_first + k for k in range(4)]
    copies, a = "", p[0]
    if copy_sources is not None:
        copies = "\n".join(f"        /*018{k + 4:x}*/                   MOV R{120 + k}, R{r} ;"
                           for k, r in enumerate(copy_sources))
        a = 120
    return (f".text.{name}:\n        /*0000*/                   MOV R88, RZ ;\n" +
            STEP.format(q_before=q_before, q_load=q_load, p0=p[0], p1=p[1], p2=p[2], p3=p[3], spill=spill,
                        copies=copies, a=a))


def run(text):
    with tempfile.NamedTemporaryFile("w", suffix=".sass", delete=False) as f:
        f.write(text)
    out = subprocess.run([sys.executable, str(SCRIPT), "--sass", f.name], capture_output=True, text=True)
    pathlib.Path(f.name).unlink()
    return out.returncode, out.stdout


def main():
    code, out = run(kernel())
    assert code == 0, out
    # P in Q's registers is fine when Q is loaded again before the next S GEMM (the
    # kernels since 497b5bb).
    code, out = run(kernel(p_first=88))
    assert code == 0, out
    # Q loaded once before the loop and P packed into its registers: the next step's S
    # GEMM reads the previous P.
    code, out = run(kernel(q_before=LDSM_Q, q_load="NOP ;", p_first=88))
    assert code == 1 and "F2FP" in out and "UNEXPECTED" in out, out
    # Q loaded only when a predicate says step 0: the path that skips it reaches the
    # kernel's entry (MOV R88, RZ) and the previous iteration.
    code, out = run(kernel(q_load="@!P1 LDSM.16.M88.4 R88, [R22] ;"))
    assert code == 1 and "MOV" in out, out
    # A spill in a wgmma kernel.
    code, out = run(kernel(spill="STL [R1], R5 ;"))
    assert code == 1 and "spills at 0180" in out, out
    # ... passes in a kernel granted a budget (SPILL_BUDGET), within it.
    code, out = run(kernel(spill="STL [R1], R5 ;", name="_ZN4ldqa3gpu13dq_all_kernelI6__halfEEvv"))
    assert code == 0 and "1 local-memory accesses (budget 16)" in out, out
    # The packs copied into other registers before the GEMM: the copies' sources count.
    code, out = run(kernel(copy_sources=[100, 101, 102, 103]))
    assert code == 0 and "F2FP" in out, out
    # A copy of something else (R88, Q's fragment) does not.
    code, out = run(kernel(copy_sources=[100, 101, 102, 88]))
    assert code == 1 and "LDSM" in out and "UNEXPECTED" in out, out
    # Not wgmma SASS at all.
    code, out = run(".text.kern:\n        /*0000*/                   EXIT ;\n")
    assert code == 1 and "no HGMMA" in out, out
    print("check-wgmma-sass: OK")


if __name__ == "__main__":
    main()
