"""What the SASS scripts share (check-wgmma-sass.py, sass-diff.py): the CUDA units of a
build compiled again to cubins with the build's own command lines, their disassembly,
and ptxas' register and spill counts. No GPU needed.

The disassembler is the toolkit's (nvdisasm or cuobjdump beside nvcc), else CUDA 11.8's
nvdisasm that scripts/install-deps.sh takes out of Debian's non-free nvidia-cuda-toolkit
into .tools/: older than the cubin's ELF ABI, it reads a CUDA 13 cubin once the header's
ABI and architecture fields are written in the older form (the instructions are the
hardware's encoding either way).
"""

import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FETCHED_NVDISASM = os.path.join(ROOT, ".tools", "nvdisasm-11.8", "nvdisasm")


def units_of(build, pattern):
    """The compile commands of BUILD/compile_commands.json whose file matches `pattern`."""
    with open(os.path.join(build, "compile_commands.json")) as f:
        return [u for u in json.load(f) if re.search(pattern, u["file"])]


def cubin_command(unit, cubin, arch=None, root=None):
    """The unit's compile command producing `cubin` instead of an object file. arch (such
    as "sm_90"): one architecture instead of the build's list (a cubin holds one). root:
    the sources and include folders taken from this tree instead of the build's."""
    args = unit["arguments"] if "arguments" in unit else shlex.split(unit["command"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a == "-c":
            out.append("-cubin")
        elif arch and (a.startswith("--generate-code") or a.startswith("-gencode") or a.startswith("-arch")):
            continue
        else:
            out.append(a.replace(ROOT, root) if root else a)
    if arch:
        out.insert(1, f"-arch={arch}")
    return out + ["-Xptxas", "-v", "-o", cubin]


def compile_cubin(unit, cubin, arch=None, root=None):
    """Compiles; returns ptxas' report (stderr), which names each kernel's registers and spills."""
    run = subprocess.run(cubin_command(unit, cubin, arch, root), cwd=unit["directory"], capture_output=True,
                         text=True)
    if run.returncode != 0:
        sys.exit(f"compiling {unit['file']} failed:\n{run.stderr}")
    return run.stderr


def ptxas_usage(report):
    """{kernel: (registers, spill store bytes, spill load bytes)} from a `ptxas -v` report."""
    usage, kernel, spills = {}, None, (0, 0)
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            kernel, spills = m.group(1), (0, 0)
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            spills = (int(m.group(1)), int(m.group(2)))
        m = re.search(r"Used (\d+) registers", line)
        if m and kernel:
            usage[kernel] = (int(m.group(1)),) + spills
    return usage


def rewrite_header_for_old_disassembler(cubin):
    """A CUDA 13 cubin's ELF header (OS/ABI 0x29, ABI version 8, the SM in flag bits 8-15)
    in the ABI-7 form CUDA 11.8's nvdisasm reads (OS/ABI 0x33, version 7, flags SM |
    virtual SM << 16 | 64-bit addresses | unified texture mode)."""
    with open(cubin, "rb") as f:
        elf = bytearray(f.read())
    flags = struct.unpack_from("<I", elf, 48)[0]
    sm = (flags >> 8) & 0xFF
    elf[7], elf[8] = 0x33, 7
    struct.pack_into("<I", elf, 48, sm | (sm << 16) | 0x500)
    with open(cubin, "wb") as f:
        f.write(elf)


def disassemble(cubin, tool):
    if os.path.basename(tool).startswith("cuobjdump"):
        return subprocess.run([tool, "-sass", cubin], check=True, capture_output=True, text=True).stdout
    run = subprocess.run([tool, "-c", cubin], capture_output=True, text=True)
    if run.returncode != 0:
        rewrite_header_for_old_disassembler(cubin)
        run = subprocess.run([tool, "-c", cubin], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{tool} could not read {cubin}: {run.stderr.strip()}")
    return run.stdout


def find_disassembler(build):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        m = re.search(r"^CMAKE_CUDA_COMPILER:\w+=(.*)$", f.read(), re.M)
    bindir = os.path.dirname(m.group(1)) if m else ""
    for name in ("nvdisasm", "cuobjdump"):
        path = os.path.join(bindir, name)
        if os.access(path, os.X_OK):
            return path
    if os.access(FETCHED_NVDISASM, os.X_OK):
        return FETCHED_NVDISASM
    return shutil.which("nvdisasm")


KERNEL = re.compile(r"^\s*\.text\.(\S+):")


def kernels_of(sass):
    """{kernel name: its lines} of a disassembly."""
    out, name = {}, None
    for line in sass.splitlines():
        m = KERNEL.match(line)
        if m:
            name = m.group(1)
            out[name] = []
        elif name:
            out[name].append(line)
    return out
