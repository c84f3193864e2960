#!/usr/bin/env python3
"""PyTorch reference timings for bench/cuda/attention_bench.cpp: same shapes, same JSON format.

Paths (q, k, v [B, H, N, d], self-attention, no mask, alpha ~ N(0, 0.3^2), no dropout):
  torch_eager   coefficient attention the way every public implementation does it: einsum over
                materialised maps, S = q k^T * scale, P = softmax(S), Phat = einsum(alpha', P),
                O = Phat v (alpha' = I + alpha); backward through autograd (q, k, v, alpha).
  sdpa_flash    torch.nn.functional.scaled_dot_product_attention WITHOUT mixing, the flash backend
                pinned with torch.nn.attention.sdpa_kernel (the ceiling for plain attention).
  sdpa_cudnn    the same with the cuDNN backend pinned, where this PyTorch/GPU offers it.
FLOPs as in attention_bench: forward 4*B*H*N^2*d, fwd+bwd 3.5x that. Peak memory: torch's peak
allocated bytes during the call minus the bytes allocated before it.

Each path is checked before it is timed, on 8 sampled query rows of batch item 0 (every head)
against an fp64 reference of the same inputs (sdpa paths against plain attention, alpha = 0):
out, and dq for fwd+bwd. A path that runs out of memory is recorded as "oom" and the next
one runs; a backend this PyTorch lacks is "unavailable".

Measured: not yet (no GPU lent, 2026-11-29); command:
  python3 bench/torch_reference.py --json torch_reference.json
Dry run on a CPU (tiny shapes, timings meaningless):
  python3 bench/torch_reference.py --device cpu --tiny --json /tmp/torch_ref.json
The CPU peer of bench/attention_cpu_bench (its shapes, fp32; bench/README.md has the results):
  python3 bench/torch_reference.py --device cpu --dtype fp32 --cpu-shapes --json torch_cpu.json

Exit status: 0 ok, 1 a check failed or an unexpected error, 2 no CUDA device (with --device cuda),
64 bad arguments.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

SHAPES = [  # name, B, H, N, d, in --quick
    ("vit_b16", 64, 12, 197, 64, True),
    ("sd15", 2, 8, 4096, 40, True),
    ("sdxl", 2, 10, 4096, 64, False),
    ("long", 1, 16, 16384, 128, False),
]
# --cpu-shapes: bench/attention_cpu_bench's shapes (with --device cpu --dtype fp32), so PyTorch
# eager on the same CPU is the peer of coeffnet's materialised and tiled CPU backends.
CPU_SHAPES = [
    ("vit197", 8, 12, 197, 64, True),
    ("sd1024", 1, 8, 1024, 40, True),
    ("sd4096", 1, 8, 4096, 40, True),
]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write results here (PATH.tmp, then renamed)")
    p.add_argument("--quick", action="store_true", help="vit_b16 and sd15 only, at most 3 reps")
    p.add_argument("--reps", type=int, default=10, help="timed calls per case at most (median)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per case")
    p.add_argument("--filter", default="", help="only shapes whose name contains this")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run)")
    p.add_argument("--tiny", action="store_true", help="divide N by 64 and B by 16 (dry runs)")
    p.add_argument("--cpu-shapes", action="store_true",
                   help="bench/attention_cpu_bench's shapes instead (use with --device cpu --dtype fp32)")
    try:
        return p.parse_args(argv)
    except SystemExit as e:
        sys.exit(0 if e.code == 0 else 64)


def fwd_flops(B, H, N, d):
    return 4.0 * B * H * N * N * d


class Timer:
    """Median milliseconds of fn(): CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def once(self, fn):
        t = self.torch
        if self.cuda:
            e0, e1 = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            return e0.elapsed_time(e1)
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    def median(self, fn, reps, budget):
        first = self.once(fn)  # warm-up; sizes the rep count
        n = max(1, min(reps, int(budget * 1e3 / max(first, 1e-3))))
        return statistics.median(self.once(fn) for _ in range(n))


def coeff_attention_eager(torch, q, k, v, alpha):
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.einsum("bhnd,bhmd->bhnm", q, k) * scale
    p = torch.softmax(s, dim=-1)
    a = torch.eye(alpha.shape[0], device=alpha.device, dtype=alpha.dtype) + alpha
    phat = torch.einsum("hi,binm->bhnm", a.to(p.dtype), p)
    return torch.einsum("bhnm,bhmd->bhnd", phat, v)


def sdpa_backend(torch, name):
    """(context-manager factory, reason) for the pinned SDPA backend, or (None, reason)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        return None, "torch.nn.attention.sdpa_kernel unavailable: %s" % e
    member = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_cudnn": "CUDNN_ATTENTION"}[name]
    if not hasattr(SDPBackend, member):
        return None, "SDPBackend.%s not in this PyTorch" % member
    return (lambda: sdpa_kernel(getattr(SDPBackend, member))), ""


def reference_rows(torch, q, k, v, dout, alpha, rows, mix):
    """fp64 out and dq for query rows `rows` of batch item 0, every head: [H, len(rows), d]."""
    q0 = q[0].double().detach().requires_grad_(True)
    k0, v0, do0 = k[0].double(), v[0].double(), dout[0].double()
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.einsum("hnd,hmd->hnm", q0[:, rows], k0) * scale
    p = torch.softmax(s, dim=-1)
    if mix:
        a = torch.eye(alpha.shape[0], dtype=torch.float64, device=alpha.device) + alpha.double()
        p = torch.einsum("hi,inm->hnm", a, p)
    out = torch.einsum("hnm,hmd->hnd", p, v0)
    (dq0,) = torch.autograd.grad(out, q0, do0[:, rows])
    return out.detach(), dq0[:, rows].detach()


def rel_err(got, ref):
    mag = ref.abs().max().item()
    diff = (got.double() - ref).abs().max().item()
    return diff / mag if mag > 0 else diff


def run_shape(torch, args, device, dtype, shape, results):
    name, B, H, N, d, _ = shape
    if args.tiny:
        B, N = max(1, B // 16), max(4, N // 64)
    print("%s B=%d H=%d N=%d d=%d" % (name, B, H, N, d))
    dname = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    g = torch.Generator(device="cpu").manual_seed(2026)
    mk = lambda: torch.randn(B, H, N, d, generator=g).to(device=device, dtype=dtype)
    q, k, v, dout = mk(), mk(), mk(), mk()
    alpha = (0.3 * torch.randn(H, H, generator=g)).to(device=device, dtype=torch.float32)
    rows = sorted({(r * 2654435761 + 17) % N for r in range(8)})
    tol = 1e-3 if dtype == torch.float32 else 3e-2
    timer = Timer(torch, device)
    ok = True

    for path in ("torch_eager", "sdpa_flash", "sdpa_cudnn"):
        mix = path == "torch_eager"
        ctx_factory, reason = (None, "")
        if not mix:
            ctx_factory, reason = sdpa_backend(torch, path)

        def call(backward):
            qq, kk, vv = (t.detach().requires_grad_(backward) for t in (q, k, v))
            aa = alpha.detach().requires_grad_(backward and mix)
            if mix:
                out = coeff_attention_eager(torch, qq, kk, vv, aa)
            else:
                with ctx_factory():
                    out = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv)
            if backward:
                out.backward(dout)
                return out, qq.grad
            return out, None

        for backward in (False, True):
            r = {"shape": name, "B": B, "H": H, "N": N, "d": d, "dtype": dname, "path": path,
                 "pass": "fwd+bwd" if backward else "fwd",
                 "flops": fwd_flops(B, H, N, d) * (3.5 if backward else 1.0)}
            if not mix and ctx_factory is None:
                r.update(status="unavailable", note=reason)
                results.append(r)
                print("  %-12s %-8s unavailable (%s)" % (path, r["pass"], reason))
                continue
            try:
                with torch.no_grad() if not backward else _null():
                    out, dq = call(backward)
                ref_out, ref_dq = reference_rows(torch, q, k, v, dout, alpha, rows, mix)
                check = {"against": "fp64, 8 sampled query rows of item 0", "tol": tol,
                         "out": rel_err(out[0][:, rows], ref_out)}
                if backward:
                    check["dq"] = rel_err(dq[0][:, rows], ref_dq)
                check["ok"] = all(check[key] <= tol for key in ("out", "dq") if key in check)
                del out, dq
                r["check"] = check
                if not check["ok"]:
                    r["status"] = "check_failed"
                    ok = False
                else:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                        base = torch.cuda.memory_allocated()
                        torch.cuda.reset_peak_memory_stats()

                    def timed():
                        if backward:
                            call(True)
                        else:
                            with torch.no_grad():
                                call(False)

                    ms = timer.median(timed, min(args.reps, 3) if args.quick else args.reps, args.budget)
                    r.update(status="ok", ms=ms, tflops=r["flops"] / (ms * 1e-3) / 1e12)
                    if device.type == "cuda":
                        r["peak_bytes"] = torch.cuda.max_memory_allocated() - base
            except torch.cuda.OutOfMemoryError as e:
                r.update(status="oom", note=str(e).split("\n")[0])
            except RuntimeError as e:
                msg = str(e).split("\n")[0]
                if any(x in msg for x in ("No available kernel", "No viable backend")) or "not supported" in msg.lower():
                    r.update(status="unavailable", note=msg)
                elif "out of memory" in msg.lower():
                    r.update(status="oom", note=msg)
                else:
                    r.update(status="error", note=msg)
                    ok = False
            if device.type == "cuda":
                torch.cuda.empty_cache()
            results.append(r)
            if r["status"] == "ok":
                print("  %-12s %-8s %10.3f ms %8.2f TFLOP/s%s" % (
                    path, r["pass"], r["ms"], r["tflops"],
                    "  peak %.1f MiB" % (r["peak_bytes"] / 2**20) if "peak_bytes" in r else ""))
            else:
                print("  %-12s %-8s %s %s" % (path, r["pass"], r["status"], r.get("note", r.get("check", ""))))
            sys.stdout.flush()
    return ok


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv):
    args = parse_args(argv)
    try:
        import torch
    except ImportError as e:
        print("torch_reference: PyTorch is not installed (%s); nothing was measured" % e, file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("torch_reference: no usable CUDA device; nothing was measured (try --device cpu --tiny for a dry run)",
              file=sys.stderr)
        return 2
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    desc = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print("torch_reference on %s (torch %s)" % (desc, torch.__version__))
    results, ok = [], True
    for shape in CPU_SHAPES if args.cpu_shapes else SHAPES:
        if args.quick and not shape[5]:
            continue
        if args.filter and args.filter not in shape[0]:
            continue
        try:
            ok = run_shape(torch, args, device, dtype, shape, results) and ok
        except Exception as e:  # a shape that cannot even allocate its inputs
            results.append({"shape": shape[0], "status": "error", "note": str(e).split("\n")[0]})
            print("  error: %s" % e)
            ok = False
    if args.json:
        write_json(args.json, {
            "bench": "torch_reference", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": desc, "torch": torch.__version__,
            "cuda": getattr(torch.version, "cuda", None),
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "flop_formula": "fwd 4*B*H*N^2*d; fwd+bwd 3.5x that",
            "threads": torch.get_num_threads(), "quick": args.quick, "tiny": args.tiny, "ok": ok, "results": results})
        print("wrote %s" % args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
