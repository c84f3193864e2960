#!/usr/bin/env python3
"""Reference fixtures for coeffnet's tests, made by the reference implementations themselves.

    python3 tools/make_reference.py                 # rewrite the fixtures under tests/data/
    python3 tools/make_reference.py --full DIR      # also: a full-size ViT-B/16 (random weights)
                                                    # saved to DIR with its reference logits
                                                    # (not committed; hundreds of MB)
    python3 tools/make_reference.py --full DIR --compare build/tools/coeffnet
                                                    # ...and compare `coeffnet vit predict` with them

On first use it creates a virtual environment in .venv (git-ignored) with the pinned versions
below and re-runs itself there. Everything is seeded: a rerun with the same versions on the same
machine writes the same tensors; on another machine PyTorch's kernels may round differently (a
rerun on 2026-12-07 moved last_hidden_state by up to 7e-7 at a scale of 3, gradients by up to
2.6e-8 at 0.06: far inside the tests' tolerances).

What it writes (all float32, as the models run in PyTorch):
  tests/data/torch_save_file.safetensors   safetensors.torch.save_file with one tensor per dtype
  tests/data/vit_cls/                      ViTForImageClassification, saved by save_pretrained
  tests/data/vit_cls_sharded/              the same weights, sharded (model.safetensors.index.json)
  tests/data/vit_base/                     ViTModel with pooler, non-square image, no qkv bias
  tests/data/<model>_reference.safetensors inputs, outputs and gradients (see make_vit_reference)

The Coeff-Tuning reference below patches transformers' own ViTAttention.forward so each layer
mixes its heads' attention maps with I + alpha (einsum over materialised maps, the way public
implementations do it); everything else is transformers' code.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PINNED = ["torch==2.15.0", "transformers==5.24.0", "safetensors==0.8.0", "numpy==2.4.6", "pillow==13.0.0"]


def ensure_venv():
    """Re-executes this script inside .venv, creating it with the pinned packages if needed."""
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        print(f"make_reference: creating {VENV} with {' '.join(PINNED)}", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PINNED])
    os.execv(str(py), [str(py), *sys.argv])


def save_file_sorted(tensors, path, metadata):
    """safetensors.torch.save_file, retried until __metadata__ comes out in sorted key order.

    The reference writer keeps __metadata__ in a Rust HashMap, so its key order changes from
    run to run; retrying makes the fixture bytes reproducible.
    """
    import struct
    from safetensors.torch import save_file

    for _ in range(200):
        save_file(tensors, str(path), metadata=metadata)
        raw = Path(path).read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        if list(json.loads(raw[8:8 + n])["__metadata__"]) == sorted(metadata):
            return
    raise SystemExit(f"make_reference: {path}: metadata never came out in sorted order")


def write_torch_save_file(path):
    """One tensor per dtype, written by safetensors.torch.save_file (the reference writer)."""
    import torch

    tensors = {
        "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
        "f16": torch.tensor([0.5, -1, 65504, 0.0001, 0], dtype=torch.float16),
        "bf16": torch.tensor([1, -2.5, 3.140625, 0.001], dtype=torch.bfloat16).reshape(2, 2),
        "i64": torch.tensor([-1, 0, 2**40], dtype=torch.int64),
        "f64": torch.tensor([3.141592653589793], dtype=torch.float64),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "i32": torch.tensor([[-7], [7]], dtype=torch.int32),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
    }
    save_file_sorted(tensors, path, {"format": "pt", "note": "coeffnet fixture"})


# When a dict, coeff_attention_forward appends each layer's P, Phat and Phat V (before the
# output projection) to it: the graph-filter view's reference.
RECORD = None


def coeff_attention_forward(self, hidden_states, attention_mask=None, **kwargs):
    """transformers' ViTAttention with Coeff-Tuning: Phat_h = sum_i (I + alpha)[h, i] P_i."""
    import torch

    b, n, _ = hidden_states.shape
    shape = (b, n, -1, self.head_dim)
    q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
    k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
    v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
    p = torch.softmax((q @ k.transpose(-1, -2)) * self.scaling, dim=-1)
    heads = p.shape[1]
    mix = torch.eye(heads, dtype=p.dtype) + self.coeff_alpha
    phat = torch.einsum("hi,bimn->bhmn", mix, p)
    out = (phat @ v).transpose(1, 2).reshape(b, n, -1)
    if RECORD is not None:
        RECORD.setdefault("maps", []).append(p.detach().clone())
        RECORD.setdefault("mixed_maps", []).append(phat.detach().clone())
        RECORD.setdefault("contexts", []).append(out.detach().clone())
    return self.o_proj(out), phat


def add_alphas(model, layers, heads, generator, std):
    """Attaches a random alpha [H, H] to every attention layer; returns them in layer order."""
    import torch
    from transformers.models.vit import modeling_vit

    alphas = []
    for layer in layers:
        attn = layer.attention
        alpha = torch.nn.Parameter(torch.randn(heads, heads, generator=generator) * std)
        attn.coeff_alpha = alpha
        attn.forward = coeff_attention_forward.__get__(attn, modeling_vit.ViTAttention)
        alphas.append(alpha)
    return alphas


def make_vit_reference(name, config, with_classifier, out_dir, shards=False):
    """Saves a tiny random ViT with save_pretrained and its reference tensors.

    <name>_reference.safetensors holds:
      pixel_values [B, C, H, W]; logits [B, L] (classifier) or pooler_output [B, P] (base);
      last_hidden_state [B, N, D]; then, with Coeff-Tuning on (a random alpha per layer):
      alpha.<l> [H, H]; labels [B] / weights (the loss's target); loss_coeff [];
      logits_coeff or pooler_output_coeff; last_hidden_state_coeff;
      grad_pixel_values; grad_alpha.<l>;
      the graph-filter view: attentions.<l> [B, H, N, N], transformers' output_attentions of the
      plain model (eager attention); with the alphas, maps_coeff.<l> (P), mixed_maps_coeff.<l>
      (Phat = (I + alpha) P) and context_coeff.<l> [B, N, D] (Phat V, heads merged: the input of
      the attention's output projection), recorded inside the patched attention.
    The loss is cross_entropy(logits_coeff, labels) for a classifier, and
    sum(pooler_output_coeff * weights) for the base model.
    """
    global RECORD
    import torch
    from transformers import ViTForImageClassification, ViTImageProcessor, ViTModel

    torch.manual_seed(1234)
    model = (ViTForImageClassification if with_classifier else ViTModel)(config).eval()
    target = out_dir / name
    model.save_pretrained(str(target))
    h, w = (config.image_size, config.image_size) if isinstance(config.image_size, int) else config.image_size
    if with_classifier:  # what `coeffnet vit predict` reads for resizing and normalisation
        ViTImageProcessor(size={"height": h, "width": w}, image_mean=[0.5, 0.4, 0.3],
                          image_std=[0.25, 0.2, 0.3]).save_pretrained(str(target))
    if shards:
        model.save_pretrained(str(out_dir / f"{name}_sharded"), max_shard_size="40KB")

    g = torch.Generator().manual_seed(99)
    pixels = torch.randn(2, config.num_channels, h, w, generator=g)
    ref = {"pixel_values": pixels}
    with torch.no_grad():
        if with_classifier:
            out = model(pixel_values=pixels, output_hidden_states=True)
            ref["logits"] = out.logits
            ref["last_hidden_state"] = model.vit(pixel_values=pixels).last_hidden_state
        else:
            out = model(pixel_values=pixels)
            ref["pooler_output"] = out.pooler_output
            ref["last_hidden_state"] = out.last_hidden_state

    # transformers' own attention maps, from the saved model with eager attention (the default
    # kernel does not return them); a separate model, so the tensors above are untouched.
    eager = (ViTForImageClassification if with_classifier else ViTModel).from_pretrained(
        str(target), attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = eager(pixel_values=pixels, output_attentions=True).attentions
    for i, a in enumerate(attentions):
        ref[f"attentions.{i}"] = a

    backbone = model.vit if with_classifier else model
    alphas = add_alphas(model, backbone.layers, config.num_attention_heads, g, 0.3)
    px = pixels.clone().requires_grad_(True)
    if with_classifier:
        labels = torch.randint(0, config.num_labels, (2,), generator=g)
        out = model(pixel_values=px)
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        ref["labels"] = labels
        ref["logits_coeff"] = out.logits.detach()
        ref["last_hidden_state_coeff"] = model.vit(pixel_values=px).last_hidden_state.detach()
    else:
        out = model(pixel_values=px)
        weights = torch.randn(out.pooler_output.shape, generator=g)
        loss = (out.pooler_output * weights).sum()
        ref["weights"] = weights
        ref["pooler_output_coeff"] = out.pooler_output.detach()
        ref["last_hidden_state_coeff"] = out.last_hidden_state.detach()
    loss.backward()
    RECORD = {}
    with torch.no_grad():
        model(pixel_values=pixels)
    for key, prefix in (("maps", "maps_coeff"), ("mixed_maps", "mixed_maps_coeff"), ("contexts", "context_coeff")):
        for i, t in enumerate(RECORD[key]):
            ref[f"{prefix}.{i}"] = t
    RECORD = None
    ref["loss_coeff"] = loss.detach()
    ref["grad_pixel_values"] = px.grad
    for i, a in enumerate(alphas):
        ref[f"alpha.{i}"] = a.detach().clone()
        ref[f"grad_alpha.{i}"] = a.grad
    ref = {k: v.contiguous() for k, v in ref.items()}
    import transformers

    save_file_sorted(ref, out_dir / f"{name}_reference.safetensors",
                     {"torch": torch.__version__, "transformers": transformers.__version__,
                      "model": name, "script": "tools/make_reference.py"})


def make_full(dir_, compare):
    """ViT-B/16 with random weights (transformers' init), its config and reference logits."""
    import torch
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(num_labels=1000)
    model = ViTForImageClassification(config).eval()
    dir_ = Path(dir_)
    model.save_pretrained(str(dir_))
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    save_file({"pixel_values": pixels.contiguous(), "logits": logits.contiguous()}, str(dir_ / "reference.safetensors"))
    print(f"make_reference: ViT-B/16 written to {dir_} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    if compare:
        res = subprocess.run([compare, "vit", "predict", "--model", str(dir_), "--pixels",
                              str(dir_ / "reference.safetensors"), "--top", "1000", "--json"],
                             check=True, capture_output=True, text=True)
        got = json.loads(res.stdout)
        ours = torch.zeros(1000)
        for entry in got["predictions"][0]["top"]:
            ours[entry["index"]] = entry["logit"]
        diff = (ours - logits[0]).abs().max().item()
        print(f"make_reference: coeffnet vs transformers ViT-B/16 logits: max abs difference {diff:.3e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "tests" / "data"), help="fixture folder (default tests/data)")
    parser.add_argument("--full", metavar="DIR", help="also write a full-size ViT-B/16 to DIR")
    parser.add_argument("--compare", metavar="COEFFNET", help="with --full: the coeffnet binary to compare")
    args = parser.parse_args()
    ensure_venv()

    import torch
    from transformers import ViTConfig

    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_torch_save_file(out / "torch_save_file.safetensors")

    labels = ["circle", "square", "triangle", "star", "cross"]
    cls = ViTConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=6, intermediate_size=96,
                    image_size=30, patch_size=8, num_labels=5, layer_norm_eps=1e-12,
                    id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    make_vit_reference("vit_cls", cls, True, out, shards=True)
    base = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
                     image_size=[24, 40], patch_size=8, qkv_bias=False, layer_norm_eps=1e-6,
                     hidden_act="gelu_new", pooler_output_size=24)
    make_vit_reference("vit_base", base, False, out)
    sizes = [p.stat().st_size for p in out.rglob("*") if p.is_file()]
    print(f"make_reference: wrote {len(sizes)} files, {sum(sizes) / 1e6:.2f} MB in {out}")
    if args.full:
        make_full(args.full, args.compare)


if __name__ == "__main__":
    main()
