#!/usr/bin/env python3
"""Image fixtures for coeffnet's image decoding and preprocessing tests (io/image.hpp and
`coeffnet vit predict --image`), made with PIL and transformers themselves.

    python3 tools/make_image_fixtures.py            # rewrite tests/data/images/

It runs in the virtual environment tools/make_reference.py creates (.venv, pinned versions);
run that script once first. Everything is deterministic: a rerun writes the same files.

What it writes to tests/data/images/ (a few KB each):
  shape.png            45 x 37 RGB: an orange star on a blue-green gradient (anti-aliased)
  shape.jpg            the same, JPEG quality 90, PIL's default 4:2:0 chroma subsampling
  shape_gray.png       the same in grayscale (PIL mode L)
  shape_rgba.png       RGBA: the star opaque, the background's alpha fading left to right
  shape_palette.png    a 16-colour palette image with one transparent colour (PIL mode P)
  shape_pixels.safetensors, the references (metadata "made_by": the versions that made them):
    pixel_values       F32 [1, 3, 30, 30]  transformers' ViT image processor on shape.png with
                                           tests/data/vit_cls/preprocessor_config.json
    logits             F32 [1, 5]          tests/data/vit_cls on pixel_values
    pixel_values_jpeg  F32 [1, 3, 30, 30]  the processor on shape.jpg (PIL's JPEG decoder)
    logits_jpeg        F32 [1, 5]
    logits_default     F32 [1, 5]          tests/data/vit_cls on shape.png preprocessed with
                                           ViTImageProcessor's defaults at 30 x 30 (mean = std
                                           = 0.5): what `coeffnet vit predict` does for a model
                                           directory without preprocessor_config.json
    decoded_jpeg       U8 [37, 45, 3]      np.array(Image.open("shape.jpg")): PIL's decode
    resized.<name>     U8 [3, 30, 30]      the processor's resized image (no rescale, no
                                           normalisation) for shape.png, gray, rgba, palette
                                           (the last three with do_convert_rgb=True, which
                                           composites transparency onto white)
    pil.<filter>.<W>x<H> U8 [H, W, 3]      Image.resize((W, H), filter) of shape.png: every
                                           PIL filter at 20 x 16 and bilinear at 7 x 5 (strong
                                           downscale), 52 x 41 (upscale) and 45 x 12 (one axis)

transformers 5's ViTImageProcessor uses torchvision when it is installed and falls back to
ViTImageProcessorPil (PIL's resize) when it is not; the pinned environment has no torchvision,
so this script uses ViTImageProcessorPil by name: the same numbers either way the fallback goes.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
OUT = ROOT / "tests" / "data" / "images"


def ensure_venv():
    """Re-executes this script inside .venv (made by tools/make_reference.py)."""
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        sys.exit(f"make_image_fixtures: {VENV} is missing; run python3 tools/make_reference.py once to create it")
    os.execv(str(py), [str(py), *sys.argv])


def draw_shape():
    """The 45 x 37 test picture, drawn at 8x and downsampled for smooth edges."""
    import math

    from PIL import Image, ImageDraw

    w, h, s = 45, 37, 8
    big = Image.new("RGB", (w * s, h * s))
    px = big.load()
    for y in range(h * s):
        for x in range(w * s):
            px[x, y] = (20 + 60 * x // (w * s), 60 + 120 * y // (h * s), 200 - 90 * y // (h * s))
    d = ImageDraw.Draw(big)
    cx, cy, r_out, r_in = 21 * s, 19 * s, 15 * s, 6.5 * s
    pts = []
    for i in range(10):
        a = -math.pi / 2 + i * math.pi / 5
        r = r_out if i % 2 == 0 else r_in
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    d.polygon(pts, fill=(250, 170, 30))
    d.ellipse((36 * s, 3 * s, 43 * s, 10 * s), fill=(240, 240, 235))  # a small moon, top right
    return big.resize((w, h), Image.Resampling.LANCZOS)


def main():
    ensure_venv()
    import numpy as np
    import PIL
    import torch
    import transformers
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import ViTForImageClassification, ViTImageProcessorPil

    OUT.mkdir(parents=True, exist_ok=True)
    rgb = draw_shape()
    rgb.save(OUT / "shape.png", optimize=True)
    rgb.save(OUT / "shape.jpg", quality=90)
    rgb.convert("L").save(OUT / "shape_gray.png", optimize=True)
    rgba = rgb.convert("RGBA")
    arr = np.array(rgba)
    star = (arr[..., 0] > 200) & (arr[..., 2] < 120)
    ramp = np.linspace(40, 255, arr.shape[1]).astype(np.uint8)[None, :].repeat(arr.shape[0], 0)
    arr[..., 3] = np.where(star, 255, ramp)
    Image.fromarray(arr, "RGBA").save(OUT / "shape_rgba.png", optimize=True)
    pal = rgb.quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    pal.info["transparency"] = int(np.array(pal)[0, 0])  # the top-left corner's colour
    pal.save(OUT / "shape_palette.png", transparency=pal.info["transparency"], optimize=True)

    model_dir = ROOT / "tests" / "data" / "vit_cls"
    proc = ViTImageProcessorPil.from_pretrained(str(model_dir))
    model = ViTForImageClassification.from_pretrained(str(model_dir)).eval()

    def open_(name):
        im = Image.open(OUT / name)
        im.load()
        return im

    ref = {}
    with torch.no_grad():
        for key, name in (("", "shape.png"), ("_jpeg", "shape.jpg")):
            pv = proc(images=open_(name), return_tensors="pt")["pixel_values"]
            ref["pixel_values" + key] = pv
            ref["logits" + key] = model(pixel_values=pv).logits
        default = ViTImageProcessorPil(size={"height": 30, "width": 30})
        ref["logits_default"] = model(pixel_values=default(images=open_("shape.png"), return_tensors="pt")["pixel_values"]).logits
    ref["decoded_jpeg"] = torch.from_numpy(np.array(open_("shape.jpg")))
    for key, name in (("png", "shape.png"), ("gray", "shape_gray.png"), ("rgba", "shape_rgba.png"),
                      ("palette", "shape_palette.png")):
        out = proc(images=open_(name), do_rescale=False, do_normalize=False, do_convert_rgb=key != "png",
                   return_tensors="np")["pixel_values"][0]
        assert out.dtype == np.uint8, out.dtype
        ref[f"resized.{key}"] = torch.from_numpy(out.copy())
    filters = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
               "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
               "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    sizes = [(name, (20, 16)) for name in filters] + [("bilinear", (7, 5)), ("bilinear", (52, 41)),
                                                      ("bilinear", (45, 12))]
    for name, (w, h) in sizes:
        ref[f"pil.{name}.{w}x{h}"] = torch.from_numpy(np.array(rgb.resize((w, h), filters[name])))
    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, str(OUT / "shape_pixels.safetensors"),
              # One key: safetensors writes several in a random (hash map) order, and the file
              # should be the same bytes on every run.
              metadata={"made_by": f"tools/make_image_fixtures.py with transformers {transformers.__version__} "
                                   f"({type(proc).__name__}), torch {torch.__version__}, pillow {PIL.__version__}"})
    sizes = sorted((p.stat().st_size, p.name) for p in OUT.iterdir() if p.is_file())
    for size, name in sizes:
        print(f"make_image_fixtures: {name:28s} {size:7d} bytes")
    top = ref["logits"][0].argmax().item()
    print(f"make_image_fixtures: vit_cls on shape.png: top-1 {model.config.id2label[top]} "
          f"logits {ref['logits'][0].tolist()}")


if __name__ == "__main__":
    main()
