#!/usr/bin/env python3
"""coeffnet against PyTorch on this CPU: the same ViT-B/16, the same weights and pixels, side by side.

    python3 bench/cpu_vs_torch.py                     # the whole comparison (21 minutes on 2 cores)
    python3 bench/cpu_vs_torch.py --quick             # 2 threads only, 2 reps, no extra rows
    python3 bench/cpu_vs_torch.py --json out.json     # also the record as JSON (out.json.tmp, renamed)
    python3 bench/cpu_vs_torch.py --table out.json    # that record's table again

On first use it creates .venv (git-ignored) with the PyTorch and transformers versions pinned in
tools/make_reference.py and reruns itself there. It builds what it runs (bench/vit_step, and for
their rows bench/attention_cpu_bench, bench/gemm_bench and tools/coeffnet) in build/ first,
configuring it on a fresh clone (the compilers and libraries are the quick start's); --no-build
times the programs there as they are.

What it does, in order:
 1. The model: transformers' ViTForImageClassification with ViT-B/16's config (1000 labels) and
    its own random initialisation (torch seed 0), saved with save_pretrained in a temporary
    directory; pixels randn [8, 3, 224, 224] (seed 1) in pixels.safetensors. Both sides load these.
 2. The check, before anything is timed: coeffnet's logits of the 8 images (`vit_step --work fwd
    --logits-out`) against PyTorch's, max |difference| <= 1e-4 * max |PyTorch's logits|. A
    failure stops the run (exit 1).
 3. The works, at 1 and 2 threads (--threads), each in fresh processes, coeffnet and PyTorch in
    turn (one process per work and side, so each one's peak resident memory is its own):
      fwd1, fwd8   forward at batch 1 and 8 (evaluation mode, no autograd)
      alpha8       Coeff-Tuning step at batch 8: backbone and head frozen, alpha [12, 12] per
                   layer (I + alpha), cross-entropy, backward, AdamW on the alphas
      lora8        the same with LoRA (rank 4, alpha 8) on query and value trained beside alpha
      full8        full fine-tuning step at batch 8 (AdamW on every parameter)
    PyTorch's forward and full step run with eager attention and with SDPA; its Coeff-Tuning
    steps mix materialised maps with an einsum (tools/make_reference.py's attention, the way
    public Coeff-Tuning code does it; SDPA cannot mix heads). Per process: one warm-up call,
    then --reps timed calls; the process's median is its time.
 4. PyTorch's environment: threads set explicitly (torch.set_num_threads, OMP_NUM_THREADS,
    one inter-op thread) and fp32 matmul precision "highest" on both sides. Two environments are
    reported: "installed" (nothing else set) and "best", the fastest of the candidates in
    TORCH_ENV_CANDIDATES on fwd8 at the largest thread count (every variable is listed in the
    output).
 5. Beside them: coefficient attention alone (bench/attention_cpu_compare.py: N = 197, 1024,
    4096, against PyTorch eager and SDPA), GEMM GFLOP/s on the ViT-B/16 shapes next to the
    measured FMA peak (bench/gemm_bench) and the nominal peak, `coeffnet tune --quick` wall time,
    and the CPU model.
 6. PyTorch under torch.compile (SDPA, installed environment) for fwd8 and full8: a reported
    column, not a target (--no-compile skips it).
 7. Contention: fwd1 at the largest thread count, each side idle and then beside one busy-loop
    process per core (`sh -c 'while :; do :; done'`); the slowdown is loaded / idle.

Ratios are PyTorch's time / coeffnet's time (above 1: coeffnet is faster), from this one run.
Exit status: 0 done, 1 a check failed or a program failed, 2 bad arguments.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tools"))
import make_reference  # noqa: E402  (the pinned venv and the Coeff-Tuning attention for PyTorch)

WORKS = {  # name: (vit_step work, batch)
    "fwd1": ("fwd", 1),
    "fwd8": ("fwd", 8),
    "alpha8": ("alpha", 8),
    "lora8": ("lora", 8),
    "full8": ("full", 8),
}
# PyTorch environments tried for "best" (each on top of the thread settings).
TORCH_ENV_CANDIDATES = [
    {},
    {"OMP_WAIT_POLICY": "ACTIVE"},
    {"OMP_WAIT_POLICY": "PASSIVE"},
    # glibc's allocator keeping large freed blocks instead of giving them back (what coeffnet's host
    # caching allocator does for its own buffers): PyTorch's CPU allocator is plain malloc, and this
    # made its forward and full step about 5 % faster here (2026-12-08).
    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=4294967296"},
]
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
LOGITS_TOL = 1e-4  # of max |PyTorch's logits|
# The programs the comparison runs (CMake targets): vit_step, and for the extra rows gemm_bench,
# attention_cpu_bench and the coeffnet command (tune --quick).
BUILD_TARGETS = ["vit_step", "gemm_bench", "attention_cpu_bench", "coeffnet_cli"]
# Works also timed with torch.compile (its first call compiles: about a minute per process here).
COMPILED_WORKS = ("fwd8", "full8")
# The contention measurement: the batch-1 forward at the largest thread count, idle and then with
# one busy process per core beside it (a researcher's laptop on an ordinary day).
BUSY_LOOP = ["sh", "-c", "while :; do :; done"]


def log(msg):
    print(f"cpu_vs_torch: {msg}", file=sys.stderr, flush=True)


# ---- the PyTorch side (run as a worker process: --torch-worker) ------------------------------

def torch_worker(a):
    """Times one work in this process and prints {"ms": [...], ...} as JSON on stdout."""
    import torch
    from safetensors.torch import load_file
    from transformers import ViTForImageClassification

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.set_float32_matmul_precision("highest")
    pixels = load_file(a.pixels)["pixel_values"][: a.batch].contiguous()
    attn = "eager" if a.attn == "eager" or a.work in ("alpha", "lora") else "sdpa"
    model = ViTForImageClassification.from_pretrained(a.model, attn_implementation=attn)
    if a.attn == "compile":  # torch.compile (inductor's C++ kernels) over the SDPA model
        attn = "sdpa+compile"
    labels = torch.arange(a.batch) % model.config.num_labels
    heads, layers = model.config.num_attention_heads, model.vit.layers

    class LoRALinear(torch.nn.Module):
        """y = base(x) + (alpha / r) x A^T B^T; A kaiming-uniform (a = sqrt 5), B zero (PEFT's init)."""

        def __init__(self, base, rank, alpha):
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.lora_a, a=5 ** 0.5)

        def forward(self, x):
            return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    if a.work == "fwd":
        model.eval()

        def call():
            with torch.inference_mode():
                return model(pixel_values=pixels).logits
    else:
        model.train()
        for p in model.parameters():
            p.requires_grad_(a.work == "full")
        params = []
        if a.work in ("alpha", "lora"):
            alphas = make_reference.add_alphas(model, layers, heads, torch.Generator().manual_seed(0), 0.0)
            params.append({"params": alphas, "lr": 1e-2, "weight_decay": 0.0})
        if a.work == "lora":
            lora = []
            for layer in layers:
                for name in ("q_proj", "v_proj"):
                    wrapped = LoRALinear(getattr(layer.attention, name), rank=4, alpha=8.0)
                    setattr(layer.attention, name, wrapped)
                    lora += [wrapped.lora_a, wrapped.lora_b]
            params.append({"params": lora, "lr": 3e-3, "weight_decay": 0.0})
        if a.work == "full":
            params.append({"params": list(model.parameters()), "lr": 3e-4, "weight_decay": 0.01})
        opt = torch.optim.AdamW(params)
        loss_fn = torch.nn.CrossEntropyLoss()

        def call():
            logits = model(pixel_values=pixels).logits
            loss = loss_fn(logits, labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return logits

    if a.attn == "compile":
        model.forward = torch.compile(model.forward)  # the module's own forward; its parameters stay shared
    out = call()  # the check run (for compile: the compilation): finite logits
    if not torch.isfinite(out).all():
        raise SystemExit("torch worker: non-finite logits")
    for _ in range(a.warmup):
        call()
    ms = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t0) * 1e3)
    hwm = next((int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")), -1)
    json.dump({"ms": ms, "peak_rss_mb": hwm / 1024.0, "attn": attn, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "mkldnn": torch.backends.mkldnn.is_available(), "mkl": torch.backends.mkl.is_available()},
              sys.stdout)


# ---- running processes -------------------------------------------------------------------------

def run(cmd, env):
    """Runs cmd; returns (stdout, wall seconds); raises with its stderr's tail on failure. Peak
    memory comes from the programs themselves (VmHWM): a child's rusage maximum would include this
    driver's resident set, which Linux carries over at fork and records at exec."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {p.returncode}:\n{p.stderr[-3000:]}")
    return p.stdout, time.perf_counter() - t0


def base_env(threads, extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "LD_PRELOAD", "COEFFNET_NUM_THREADS")}
    env["OMP_NUM_THREADS"] = str(threads)
    env.update(extra or {})
    return env


def coeffnet_work(a, model_dir, pixels, work, batch, threads, reps):
    cmd = [a.vit_step, "--model", str(model_dir), "--pixels", str(pixels), "--work", work, "--batch", str(batch),
           "--reps", str(reps), "--warmup", "1", "--json"]
    out, _ = run(cmd, base_env(threads))
    whole = json.loads(out)
    rec = whole["results"][0]
    return {"ms": rec["ms"], "ms_median": statistics.median(rec["ms"]), "peak_rss_mb": whole["peak_rss_mb"],
            "gemm_gflop": rec.get("gemm_gflop")}


def torch_work(a, model_dir, pixels, work, batch, threads, reps, attn, extra_env):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--torch-worker", "--model", str(model_dir), "--pixels",
           str(pixels), "--work", work, "--batch", str(batch), "--threads", str(threads), "--reps", str(reps),
           "--warmup", "1", "--attn", attn]
    out, _ = run(cmd, base_env(threads, extra_env))
    rec = json.loads(out)
    rec["ms_median"] = statistics.median(rec["ms"])
    return rec


# ---- the driver --------------------------------------------------------------------------------

def make_model(tmp):
    import torch
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    model_dir = tmp / "vit-b16"
    model.save_pretrained(str(model_dir))
    pixels = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    pixels_file = tmp / "pixels.safetensors"
    save_file({"pixel_values": pixels.contiguous()}, str(pixels_file))
    with torch.inference_mode():
        logits = model(pixel_values=pixels).logits
    return model_dir, pixels_file, logits


def check_logits(a, model_dir, pixels_file, torch_logits, tmp):
    from safetensors.torch import load_file

    out = tmp / "coeffnet_logits.safetensors"
    subprocess.run([a.vit_step, "--model", str(model_dir), "--pixels", str(pixels_file), "--work", "fwd", "--batch",
                    "8", "--reps", "1", "--warmup", "0", "--logits-out", str(out), "--json"],
                   check=True, capture_output=True, env=base_env(2))
    ours = load_file(str(out))["logits"]
    scale = torch_logits.abs().max().item()
    diff = (ours - torch_logits).abs().max().item()
    return {"max_abs_diff": diff, "scale": scale, "tolerance": LOGITS_TOL * scale, "ok": diff <= LOGITS_TOL * scale}


def nominal_peak(measured_single=None):
    """cores x clock x FMA units x lanes x 2 from /proc/cpuinfo. The FMA width is read from the
    CPU family: AMD family 25 (Zen 3/4) executes AVX-512 on 256-bit units (2 of them), family 26
    (Zen 5) and Intel's AVX-512 server cores have two 512-bit units. The clock is cpuinfo's "cpu MHz"
    (in a VM, the base or TSC clock): `implied_ghz` is the clock the measured 1-thread FMA peak
    implies, to compare with it (turbo)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = info.splitlines()
    field = lambda name: next((l.split(":", 1)[1].strip() for l in lines if l.startswith(name)), "")
    flags = field("flags").split()
    vendor, family = field("vendor_id"), int(field("cpu family") or 0)
    mhz = float(field("cpu MHz") or 0)
    cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    units = 2
    if lanes == 16 and vendor == "AuthenticAMD" and family < 26:
        lanes_eff = 8  # 512-bit instructions split over 256-bit pipes
    else:
        lanes_eff = lanes
    flops_per_cycle = units * lanes_eff * 2
    out = {"cpu": field("model name") or "unknown", "vendor": vendor, "family": family,
           "model": int(field("model") or 0), "cores": cores, "mhz": mhz, "isa_lanes": lanes,
           "fma_units": units, "fp32_flops_per_cycle_per_core": flops_per_cycle,
           "gflops_per_core": mhz * 1e-3 * flops_per_cycle, "gflops_all": mhz * 1e-3 * flops_per_cycle * cores}
    if measured_single:
        out["implied_ghz"] = measured_single / flops_per_cycle
    return out


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--pixels", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--attn", default="eager", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per process (default 3; fwd1: 3x that)")
    p.add_argument("--quick", action="store_true", help="2 threads only, 2 reps, no attention or tune rows")
    p.add_argument("--works", default=",".join(WORKS), help="works to time (default all: " + ",".join(WORKS) + ")")
    p.add_argument("--build", default=str(ROOT / "build"), help="the coeffnet build directory (default build/)")
    p.add_argument("--no-extras", action="store_true",
                   help="skip the attention, GEMM, tune and contention rows")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument("--no-build", action="store_true",
                   help="time the programs in --build as they are (default: configure the build if it has no "
                        "CMakeCache.txt, then bring the programs it runs up to date)")
    p.add_argument("--json", help="write the record here too (PATH.tmp, then renamed)")
    p.add_argument("--table", metavar="JSON", help="print the table of a record written by --json, and exit")
    a = p.parse_args(argv)
    if a.table:
        print_table(json.loads(Path(a.table).read_text()))
        return 0
    if a.torch_worker:
        a.threads = int(a.threads)
        return torch_worker(a)

    build = Path(a.build)
    a.vit_step = str(build / "bench" / "vit_step")
    if not a.no_build:
        ensure_built(build)
    if not Path(a.vit_step).exists():
        p.error(f"{a.vit_step} is missing: build first (bash tools/quickstart.sh)")
    if a.quick:
        a.threads, a.reps, a.no_extras, a.no_compile = "2", 2, True, True
    try:
        threads = [int(t) for t in a.threads.split(",")]
        assert threads and all(t > 0 for t in threads)
    except (ValueError, AssertionError):
        p.error(f"--threads: a comma-separated list of positive counts, got '{a.threads}'")
    works = a.works.split(",")
    for w in works:
        if w not in WORKS:
            p.error(f"--works: unknown work '{w}' ({', '.join(WORKS)})")

    import torch
    import transformers

    rec = {"benchmark": "cpu_vs_torch", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpu": nominal_peak()["cpu"], "cores": os.cpu_count(), "platform": platform.platform(),
                       "loadavg_at_start": os.getloadavg()[0]},
           "torch": {"version": torch.__version__, "transformers": transformers.__version__,
                     "config": torch.__config__.parallel_info()},
           "ratio": "PyTorch time / coeffnet time (above 1: coeffnet faster)"}
    with tempfile.TemporaryDirectory(prefix="cpu_vs_torch.") as td:
        tmp = Path(td)
        log("making the ViT-B/16 checkpoint and pixels with transformers")
        model_dir, pixels_file, torch_logits = make_model(tmp)
        chk = check_logits(a, model_dir, pixels_file, torch_logits, tmp)
        rec["check"] = chk
        log(f"logits check: max |diff| {chk['max_abs_diff']:.3e} against tolerance {chk['tolerance']:.3e}"
            f" ({'ok' if chk['ok'] else 'FAILED'})")
        if not chk["ok"]:
            print(json.dumps(rec, indent=2))
            return 1

        # PyTorch's best environment: fastest candidate on fwd8 at the largest thread count.
        tmax = max(threads)
        cands = list(TORCH_ENV_CANDIDATES)
        if Path(JEMALLOC).exists():
            cands.append({"LD_PRELOAD": JEMALLOC})
        calib = []
        for env in cands:
            r = torch_work(a, model_dir, pixels_file, "fwd", 8, tmax, max(2, a.reps), "sdpa", env)
            calib.append({"env": env, "ms_median": r["ms_median"]})
            log(f"PyTorch environment {env or '(installed)'}: fwd8 at {tmax} threads {r['ms_median']:.1f} ms")
        best_env = min(calib, key=lambda c: c["ms_median"])["env"]
        rec["torch_environments"] = {"installed": {}, "best": best_env, "candidates": calib,
                                     "always": {"OMP_NUM_THREADS": "threads", "torch.set_num_threads": "threads",
                                                "torch.set_num_interop_threads": 1,
                                                "torch.set_float32_matmul_precision": "highest"}}

        rows = []
        for t in threads:
            for w in works:
                work, batch = WORKS[w]
                reps = a.reps * 3 if w == "fwd1" else a.reps
                row = {"work": w, "threads": t, "batch": batch}
                log(f"{w} at {t} thread(s): coeffnet")
                row["coeffnet"] = coeffnet_work(a, model_dir, pixels_file, work, batch, t, reps)
                attns = ["eager"] if work in ("alpha", "lora") else ["eager", "sdpa"]
                for env_name, env in (("installed", {}), ("best", best_env)):
                    for attn in attns:
                        key = f"torch_{attn}_{env_name}"
                        log(f"{w} at {t} thread(s): PyTorch {attn}, {env_name} environment")
                        row[key] = torch_work(a, model_dir, pixels_file, work, batch, t, reps, attn, env)
                if w in COMPILED_WORKS and not a.no_compile:  # a reported column, not a target
                    log(f"{w} at {t} thread(s): PyTorch SDPA under torch.compile, installed environment")
                    row["torch_compile_installed"] = torch_work(a, model_dir, pixels_file, work, batch, t, reps,
                                                                "compile", {})
                cn = row["coeffnet"]["ms_median"]
                row["ratios"] = {k[6:]: v["ms_median"] / cn for k, v in row.items() if k.startswith("torch_")}
                row["peak_rss_mb"] = {k: v["peak_rss_mb"] for k, v in row.items()
                                      if isinstance(v, dict) and "peak_rss_mb" in v}
                rows.append(row)
                log(f"{w} at {t} thread(s): coeffnet {cn:.1f} ms; ratios " +
                    ", ".join(f"{k} {v:.2f}" for k, v in row["ratios"].items()))
        rec["works"] = rows
        if not a.no_extras:
            rec["contention"] = contention(a, model_dir, pixels_file, tmax, best_env)

    if not a.no_extras:
        rec["extras"] = extras(a, build)
    single = rec.get("extras", {}).get("gemm", {}).get("peak", {}).get("single_thread_gflops")
    rec["nominal_peak"] = nominal_peak(single)
    rec["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    print_table(rec)
    if a.json:
        tmpf = a.json + ".tmp"
        Path(tmpf).write_text(json.dumps(rec, indent=2) + "\n")
        os.replace(tmpf, a.json)
    return 0


def ensure_built(build):
    """Configures `build` (Release, Ninja where installed) when it has no CMakeCache.txt, then builds
    the programs this script runs, so that it measures the tree it is run from (on a fresh clone: one
    command). The compilers and libraries are the quick start's (bash tools/quickstart.sh installs them)."""
    if not (build / "CMakeCache.txt").exists():
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        log(f"configuring {build} (Release)")
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=subprocess.DEVNULL)
    log(f"building {', '.join(BUILD_TARGETS)} in {build}")
    r = subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1), "--target", *BUILD_TARGETS],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cpu_vs_torch: building {build} failed (install what the quick start installs: "
                         f"bash tools/quickstart.sh):\n{(r.stdout + r.stderr)[-3000:]}")


def contention(a, model_dir, pixels, threads, best_env):
    """fwd1 at `threads`, each side idle and then beside one busy-loop process per core; the
    slowdown is loaded / idle (below PyTorch's: coeffnet degrades more gracefully)."""
    reps = a.reps * 3
    out = {"work": "fwd1", "threads": threads, "busy_processes": os.cpu_count() or 1, "busy_loop": " ".join(BUSY_LOOP)}
    sides = {"coeffnet": lambda: coeffnet_work(a, model_dir, pixels, "fwd", 1, threads, reps),
             "torch_sdpa_best": lambda: torch_work(a, model_dir, pixels, "fwd", 1, threads, reps, "sdpa", best_env)}
    for name, go in sides.items():
        log(f"contention: {name} idle")
        idle = go()
        busy = [subprocess.Popen(BUSY_LOOP) for _ in range(out["busy_processes"])]
        try:
            log(f"contention: {name} beside {len(busy)} busy processes")
            loaded = go()
        finally:
            for b in busy:
                b.kill()
                b.wait()
        out[name] = {"idle_ms": idle["ms_median"], "loaded_ms": loaded["ms_median"],
                     "slowdown": loaded["ms_median"] / idle["ms_median"], "loaded_reps_ms": loaded["ms"]}
    return out


def extras(a, build):
    out = {}
    gemm = build / "bench" / "gemm_bench"
    if gemm.exists():
        log("GEMM on the ViT-B/16 shapes (bench/gemm_bench)")
        res, _ = run([str(gemm), "--json", "--quick"], base_env(os.cpu_count() or 1))
        out["gemm"] = json.loads(res)
    attn = build / "bench" / "attention_cpu_bench"
    if attn.exists():
        log("coefficient attention alone (bench/attention_cpu_compare.py)")
        with tempfile.TemporaryDirectory() as td:
            j = Path(td) / "attn.json"
            subprocess.run([sys.executable, str(HERE / "attention_cpu_compare.py"), "--bench", str(attn), "--python",
                            sys.executable, "--json", str(j)], check=True, capture_output=True)
            out["attention"] = json.loads(j.read_text())
    cli = build / "tools" / "coeffnet"
    if cli.exists():
        log("coeffnet tune --quick (wall time)")
        with tempfile.TemporaryDirectory() as td:
            _, wall = run([str(cli), "tune", "--quick", "--out", td], base_env(os.cpu_count() or 1))
        out["tune_quick"] = {"wall_s": wall}
    return out


def print_table(rec):
    print(f"cpu_vs_torch  {rec['date_utc']}  cpu: {rec['machine']['cpu']} ({rec['machine']['cores']} cores)")
    print(f"PyTorch {rec['torch']['version']}, transformers {rec['torch']['transformers']}; logits check: max |diff| "
          f"{rec['check']['max_abs_diff']:.2e} of scale {rec['check']['scale']:.2f}")
    print(f"PyTorch 'best' environment: {rec['torch_environments']['best'] or '(as installed)'}; ratio = PyTorch ms / "
          "coeffnet ms (above 1: coeffnet faster)\n")
    hdr = f"{'work':7} {'thr':>3} {'coeffnet ms':>12} {'eager ms':>10} {'sdpa ms':>10} {'r eager':>8} {'r sdpa':>8} " \
          f"{'r eager*':>8} {'r sdpa*':>8} {'RSS cn':>7} {'RSS pt':>7}"
    print(hdr)
    for r in rec["works"]:
        ra = r["ratios"]
        eager = r.get("torch_eager_installed", {}).get("ms_median")
        sdpa = r.get("torch_sdpa_installed", {}).get("ms_median")
        pt_rss = max(v for k, v in r["peak_rss_mb"].items() if k != "coeffnet")
        print(f"{r['work']:7} {r['threads']:>3} {r['coeffnet']['ms_median']:12.1f} "
              f"{eager if eager is not None else float('nan'):10.1f} {sdpa if sdpa is not None else float('nan'):10.1f} "
              f"{fmt_ratio(ra.get('eager_installed')):>8} {fmt_ratio(ra.get('sdpa_installed')):>8} "
              f"{fmt_ratio(ra.get('eager_best')):>8} {fmt_ratio(ra.get('sdpa_best')):>8} "
              f"{r['peak_rss_mb']['coeffnet']:7.0f} {pt_rss:7.0f}")
    print("(* PyTorch in its best environment; RSS: peak resident MB of the process, PyTorch's largest)")
    peak = rec.get("extras", {}).get("gemm", {}).get("peak")
    floors = [r for r in rec["works"] if r["coeffnet"].get("gemm_gflop")]
    if peak and floors:
        print("\nThe GEMM floor: a call's GEMM work at the measured FMA peak (1 thread: the 1-thread peak), the "
              "least time any fp32 implementation doing these products needs; 'ceiling' = PyTorch eager ms "
              "(best environment) / floor ms, the best ratio coeffnet could reach:")
        for r in floors:
            pk = peak["single_thread_gflops"] if r["threads"] == 1 else peak["all_threads_gflops"]
            floor = r["coeffnet"]["gemm_gflop"] / pk * 1e3
            eager = r.get("torch_eager_best", r.get("torch_eager_installed", {})).get("ms_median")
            print(f"  {r['work']:7} {r['threads']} thr: {r['coeffnet']['gemm_gflop']:7.1f} GFLOP, floor {floor:8.1f} ms, "
                  f"coeffnet's call at {100 * floor / r['coeffnet']['ms_median']:5.1f}% of the peak, ceiling "
                  f"{fmt_ratio(eager / floor if eager else None)}")
    comp = [r for r in rec["works"] if "torch_compile_installed" in r]
    if comp:
        print("\nPyTorch with torch.compile (SDPA, installed environment; reported, not a target):")
        for r in comp:
            print(f"  {r['work']:7} {r['threads']} thr: {r['torch_compile_installed']['ms_median']:9.1f} ms, "
                  f"ratio {fmt_ratio(r['ratios'].get('compile_installed'))}")
    if "contention" in rec:
        c = rec["contention"]
        print(f"\nUnder contention ({c['work']}, {c['threads']} threads, beside {c['busy_processes']} busy processes):")
        for name in ("coeffnet", "torch_sdpa_best"):
            v = c[name]
            print(f"  {name:16} idle {v['idle_ms']:8.1f} ms  loaded {v['loaded_ms']:8.1f} ms  slowdown "
                  f"{v['slowdown']:.2f}x")
    ex = rec.get("extras", {})
    if "gemm" in ex:
        g = ex["gemm"]
        n = rec["nominal_peak"]
        print(f"\nGEMM (bench/gemm_bench): measured FMA peak {g['peak']['all_threads_gflops']:.1f} GFLOP/s on "
              f"{g['peak']['threads']} threads ({g['peak']['single_thread_gflops']:.1f} on one); nominal "
              f"{n['gflops_all']:.1f} = {n['cores']} cores x {n['mhz']:.0f} MHz x {n['fp32_flops_per_cycle_per_core']} "
              f"flop/cycle (family {n['family']}); the measured 1-thread peak implies {n.get('implied_ghz', 0):.2f} GHz")
        for c in g["results"]:
            print(f"  {c['name']:28} {c['gflops']:8.1f} GFLOP/s  {100 * c['fraction_of_peak']:5.1f}% of measured peak")
    if "tune_quick" in ex:
        print(f"\ncoeffnet tune --quick: {ex['tune_quick']['wall_s']:.1f} s wall")
    if "attention" in ex:
        print("\ncoefficient attention alone (bench/attention_cpu_compare.py; ratio = PyTorch ms / coeffnet tiled ms):")
        for r in ex["attention"]["results"]:
            f = lambda v: "-" if v is None else f"{v:.2f}"
            print(f"  {r['shape']:7} {r['mode']:8} tiled {r['coeffnet_tiled_ms']:9.1f} ms  eager "
                  f"{r['torch_eager_ms'] or float('nan'):9.1f} ms (ratio {f(r['torch_eager_over_tiled'])})  SDPA, no "
                  f"mixing {r['torch_sdpa_flash_ms'] or float('nan'):8.1f} ms (ratio {f(r['sdpa_over_tiled'])})")


if __name__ == "__main__":
    if "--torch-worker" not in sys.argv:
        make_reference.ensure_venv()
    sys.exit(main(sys.argv[1:]))
