#!/usr/bin/env python3
"""coeffnet's CPU coefficient attention (materialised and tiled) against PyTorch on the same CPU.

For each shape of bench/attention_cpu_bench (vit197, sd1024, sd4096; float32), runs, one after
the other in this process's session so the machine's state is shared:
  coeffnet   ./build/bench/attention_cpu_bench --json --no-memory --filter SHAPE
  PyTorch    bench/torch_reference.py --device cpu --dtype fp32 --cpu-shapes --filter SHAPE
             (torch_eager: einsum over materialised maps, as public Coeff-Tuning code does it;
              sdpa_flash: PyTorch's fused CPU attention WITHOUT mixing, the plain-attention ceiling)
and prints milliseconds and the ratios PyTorch eager / coeffnet tiled and SDPA / coeffnet tiled.
Both programs check their results before timing them (see their own headers).

Usage: python3 bench/attention_cpu_compare.py [--bench PATH] [--python PATH] [--json OUT] [--filter S]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bench", "attention_cpu_bench"))
    p.add_argument("--python", default=sys.executable, help="a Python with torch (e.g. .venv/bin/python)")
    p.add_argument("--json", help="write the combined results here (PATH.tmp, then renamed)")
    p.add_argument("--filter", default="")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ("vit197", "sd1024", "sd4096"):
            if a.filter not in shape:
                continue
            cn = json.loads(subprocess.run([a.bench, "--json", "--no-memory", "--filter", shape],
                                           check=True, capture_output=True, text=True).stdout)
            tj = os.path.join(tmp, shape + ".json")
            subprocess.run([a.python, os.path.join(HERE, "torch_reference.py"), "--device", "cpu", "--dtype", "fp32",
                            "--cpu-shapes", "--filter", shape, "--json", tj], check=True, capture_output=True)
            torch_res = json.load(open(tj))["results"]
            for r in cn["results"]:
                t = {x["path"]: x.get("ms") for x in torch_res if x.get("pass") == r["mode"] and x.get("status") == "ok"}
                row = {"shape": shape, "mode": r["mode"], "coeffnet_materialised_ms": r["materialised"]["ms"],
                       "coeffnet_tiled_ms": r["tiled"]["ms"], "torch_eager_ms": t.get("torch_eager"),
                       "torch_sdpa_flash_ms": t.get("sdpa_flash")}
                row["torch_eager_over_tiled"] = row["torch_eager_ms"] / row["coeffnet_tiled_ms"] if t.get("torch_eager") else None
                row["sdpa_over_tiled"] = row["torch_sdpa_flash_ms"] / row["coeffnet_tiled_ms"] if t.get("sdpa_flash") else None
                rows.append(row)
                f = lambda v, fmt: fmt % v if v is not None else "-"
                print("%-7s %-8s materialised %9.1f ms  tiled %8.1f ms  torch eager %9s ms (%s)  sdpa flash %8s ms (%s)" % (
                    shape, r["mode"], row["coeffnet_materialised_ms"], row["coeffnet_tiled_ms"],
                    f(row["torch_eager_ms"], "%.1f"), f(row["torch_eager_over_tiled"], "%.2fx tiled"),
                    f(row["torch_sdpa_flash_ms"], "%.1f"), f(row["sdpa_over_tiled"], "%.2fx tiled")))
                sys.stdout.flush()
    if a.json:
        with open(a.json + ".tmp", "w") as fh:
            json.dump({"bench": "attention_cpu_compare", "machine": cn["machine"], "results": rows}, fh, indent=1)
        os.replace(a.json + ".tmp", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
