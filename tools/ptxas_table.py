#!/usr/bin/env python3
"""ptxas resource usage per kernel template, before -> after a change (the tables in kernels/*.cuh).

Input: the output of nvcc ... -Xptxas -v (stdout and stderr together), one log per .cu file, for
the "before" tree and the "after" tree. Each entry function's registers, stack frame, spill
stores/loads and static shared memory are read from its `ptxas info` lines, demangled with c++filt
and grouped by kernel template (block_kernel<..., fwd_out_block<T, DeviceBlock>> counts as
fwd_out_block). Prints, per architecture, one row per template with the ranges over its
instantiations, and then every instantiation whose figures differ (or that exists on one side only).

Logs, one nvcc at a time, from each tree's root (the flags of cmake/CoeffnetCuda.cmake, -Xptxas -v):
    for f in launchers attention gemm; do
      nvcc -std=c++20 --expt-relaxed-constexpr -O3 -Iinclude -I. '-DCOEFFNET_CUDA_ARCHS_STRING="80,90a"' \\
        --generate-code arch=compute_90a,code=sm_90a --generate-code arch=compute_80,code=sm_80 \\
        -Xptxas -v -c src/cuda/$f.cu -o /dev/null > /tmp/after-$f.log 2>&1
    done
    python3 tools/ptxas_table.py --before /tmp/before-*.log --after /tmp/after-*.log
"""
import argparse
import re
import subprocess
import sys

ENTRY = re.compile(r"ptxas info\s*: Compiling entry function '([^']+)' for '(sm_\w+)'")
PROPS = re.compile(r"ptxas info\s*: Function properties for (\S+)")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"ptxas info\s*: Used (\d+) registers(.*)")
SMEM = re.compile(r"(\d+) bytes smem")


def parse(paths):
    """{(arch, mangled): {"regs", "stack", "st", "ld", "smem"}} over the logs."""
    out = {}
    for path in paths:
        cur = None  # (arch, mangled) of the entry being described
        props_for = None
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = ENTRY.search(line)
                if m:
                    cur = (m.group(2), m.group(1))
                    out.setdefault(cur, {"regs": 0, "stack": 0, "st": 0, "ld": 0, "smem": 0})
                    props_for = None
                    continue
                m = PROPS.search(line)
                if m:
                    props_for = m.group(1)
                    continue
                m = FRAME.search(line)
                if m and cur and props_for == cur[1]:
                    d = out[cur]
                    d["stack"], d["st"], d["ld"] = (int(g) for g in m.groups())
                    continue
                m = USED.search(line)
                if m and cur:
                    d = out[cur]
                    d["regs"] = int(m.group(1))
                    s = SMEM.search(m.group(2))
                    d["smem"] = int(s.group(1)) if s else 0
                    cur = None
    return out


def demangle(names):
    names = sorted(set(names))
    if not names:
        return {}
    r = subprocess.run(["c++filt"], input="\n".join(names) + "\n", capture_output=True, text=True, check=True)
    return dict(zip(names, r.stdout.splitlines()))


def template_name(demangled):
    """The kernel template: the function's unqualified name, or the block function of a block_kernel."""
    head = demangled.replace("(anonymous namespace)::", "")
    if head.startswith("void "):
        head = head[len("void "):]
    base = re.match(r"([\w:]+)", head).group(1).split("::")[-1]
    if base == "block_kernel":
        m = re.search(r"(\w+_block)<", head)
        if m:
            return m.group(1)
    return base


def rng(vals):
    lo, hi = min(vals), max(vals)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def spill(ds):
    return f"{rng([d['st'] for d in ds])}/{rng([d['ld'] for d in ds])}"


def rekey(table, names):
    """{(arch, demangled): figures}: the demangled name, since an anonymous namespace's mangled
    name carries a hash of the file's path (the two trees' logs would never match)."""
    return {(arch, names[m]): d for (arch, m), d in table.items()}


HEADER_COLS = ("regs", "stack", "spill st/ld", "sm_80 regs", "sm_80 stack", "sm_80 spill st/ld")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", nargs="+", required=True, help="nvcc -Xptxas -v logs of the old tree")
    ap.add_argument("--after", nargs="+", required=True, help="nvcc -Xptxas -v logs of the new tree")
    ap.add_argument("--header", metavar="T1,T2,...",
                    help="print only these templates, as the comment table of a kernel file "
                         "(sm_90a columns, then sm_80's; no smem column)")
    args = ap.parse_args()
    before, after = parse(args.before), parse(args.after)
    names = demangle([k[1] for k in list(before) + list(after)])
    before, after = rekey(before, names), rekey(after, names)
    archs = sorted({k[0] for k in list(before) + list(after)}, key=lambda a: (a != "sm_90a", a))
    rows = {}  # template -> [cells], sm_90a's then sm_80's
    counts = {}
    differ = []
    for arch in archs:
        groups = {}
        for side, table in (("before", before), ("after", after)):
            for (a, name), d in table.items():
                if a == arch:
                    groups.setdefault(template_name(name), {"before": [], "after": []})[side].append(d)
        for t in sorted(groups):
            b, a = groups[t]["before"], groups[t]["after"]
            counts[t] = str(len(a)) if len(a) == len(b) else f"{len(b)}->{len(a)}"
            for f in (lambda ds: rng([d["regs"] for d in ds]), lambda ds: rng([d["stack"] for d in ds]), spill,
                      lambda ds: rng([d["smem"] for d in ds])):
                rows.setdefault((arch, t), []).append(f"{f(b) if b else '-'} -> {f(a) if a else '-'}")
        for name in sorted({k[1] for k in list(before) + list(after) if k[0] == arch}):
            b, a = before.get((arch, name)), after.get((arch, name))
            if b != a:
                differ.append(f"{arch} {name}: {b} -> {a}")
    if args.header:
        wanted = args.header.split(",")
        table = [["kernel (instantiations)", *HEADER_COLS]]
        for t in wanted:
            cells = [f"{t} ({counts.get(t, 0)})"]
            for arch in ("sm_90a", "sm_80"):
                cells += rows.get((arch, t), ["-", "-", "-", "-"])[:3]
            table.append(cells)
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            print("//   " + " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    else:
        for arch in archs:
            print(f"{arch}: kernel (instantiations) | regs | stack | spill st/ld | smem   (before -> after)")
            for (a, t), cells in sorted(rows.items()):
                if a == arch:
                    print(f"  {t} ({counts[t]}) | " + " | ".join(cells))
    for line in differ:
        print("DIFFERS " + line, file=sys.stderr)
    n = len({k for k in before if k[0] in archs} | {k for k in after if k[0] in archs})
    print(f"{n} instantiations x architectures compared; {len(differ)} differ or exist on one side only",
          file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
