"""Shared by the per-family examples: GLASS generation, FK steering with a reward on images, and
posterior samples of an image, on a loaded diffusers pipeline (``glass.from_pipe``).

Each example loads the real pipeline (GPU, weights from the hub) or, with ``--tiny``, a tiny
random-weight pipeline built offline (tests/tiny_pipes.py), and writes a PNG grid to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import glass

ROOT = Path(__file__).resolve().parents[1]


def main(argv, family: str, pipeline: str, model_id: str, dtype, offload: bool = False, **options):
    """Load ``pipeline`` from ``model_id`` on the GPU (``offload``: model by model, for pipelines larger
    than the GPU's memory; or, with ``--tiny``, the tiny offline one) and run the three uses of
    :func:`run` on it."""
    args = parse(argv, family)
    if args.tiny:
        pipe, options = tiny(family)
    else:
        import diffusers

        pipe = getattr(diffusers, pipeline).from_pretrained(model_id, torch_dtype=dtype)
        if offload:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to("cuda")
    if getattr(args, "image", None):  # FLUX.2, Kontext: every use below edits from this reference image
        options["image"] = args.image
        if args.tiny and family == "flux_kontext":  # at its own size: Kontext's preferred ones are large
            options["auto_resize"] = False
    return run(pipe, args, **options)


def parse(argv, family: str):
    ap = argparse.ArgumentParser(description=f"GLASS on a {family} diffusers pipeline")
    ap.add_argument("--tiny", action="store_true", help="a tiny random-weight pipeline, offline on the CPU")
    ap.add_argument("--steps", type=int, default=None, help="outer steps K (default: 28, tiny: 3)")
    ap.add_argument("--out", default=f"outputs/examples/{family}.png")
    if family.startswith("flux2") or family == "flux_kontext":
        ap.add_argument("--image", default=None, help="a reference image to edit from (pipe's image=)")
    return ap.parse_args(argv)


def tiny(family: str):
    sys.path.insert(0, str(ROOT))
    from tests.tiny_pipes import MAX_SEQUENCE_LENGTH, PIPES, SIZE

    n = MAX_SEQUENCE_LENGTH[family]
    return PIPES[family](), {
        "height": SIZE[family],
        "width": SIZE[family],
        **({"max_sequence_length": n} if n else {}),
    }


class Brightness:
    """A stand-in reward on images in [-1, 1] (mean brightness); put ImageReward, CLIP score, ... here."""

    differentiable = True

    def __call__(self, images, **cond):
        return images.double().mean(dim=(1, 2, 3))


def run(pipe, args, **options) -> Path:
    """The three uses, on any supported pipe; returns the written image grid."""
    model = glass.from_pipe(pipe, **options)  # shares the pipe's modules, never changes them
    k = args.steps or (3 if args.tiny else 28)
    prompts = ["a photo of a cat", "a red car on a street"]
    g = torch.Generator(model.device).manual_seed(0)
    t0 = time.time()
    # 1. GLASS generation: stochastic transitions at ODE cost (M = 4 inner steps, rho = 0.4)
    x = glass.generate(model, glass.GLASS(4, rho=0.4), k, n=2, prompt=prompts, generator=g, progress=True)
    samples = model.decode(x)  # (2, 3, H, W) in [0, 1]
    # 2. FK steering towards a reward on images (particles decoded by the adapter), one prompt per group
    res = glass.fk_steering(
        model,
        glass.GLASS(2),
        Brightness(),
        grid=k,
        particles=4,
        groups=2,
        lam=10.0,
        prompt=prompts,
        generator=g,
        progress=True,
    )
    steered = model.decode(res.best()[0])
    # 3. posterior samples p_{1|t} of your own image (here: the first sample), noised to t = 0.5
    post = glass.posterior(model, samples[:1], 0.5, glass.GLASS(4), n=2, prompt=prompts[0], generator=g)
    grid = torch.cat([samples, steered, post[0]]).float().cpu()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from torchvision.utils import save_image

    save_image(grid, out, nrow=2)
    print(f"{model!r}: {time.time() - t0:.1f} s; rows: GLASS samples, FK-steered, posterior samples -> {out}")
    return out
