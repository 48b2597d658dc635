"""The inverse-problems figure (README): for a few MNIST validation images and each problem (inpainting,
4x super-resolution, heavy denoising), the original, the measurement y and posterior samples of each
method at 40 NFE per sample (the ``inverse`` reproduce definition's settings). Writes
experiments/results/inverse_mnist_samples.png; about 3 minutes on 2 CPU cores.

    python experiments/inverse_gallery.py [--images 4] [--samples 3] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from glass.models.mnist import load_flow, to_pixels
from glass.plotting import image_rows
from glass.rewards import Measurement
from glass.samplers import GLASS, ODE, SDE
from glass.tasks import Inverse

OUT = Path(__file__).resolve().parent / "results" / "inverse_mnist_samples.png"
PROBLEMS = {"inpainting (lower half), s = 0.1": ("inpaint", 0.1),
            "4x super-resolution, s = 0.1": ("downsample", 0.1),
            "denoising, s = 0.75": ("identity", 0.75)}  # fmt: skip
METHODS = {  # label: (task options, kernel), 40 NFE per sample each
    "guidance, SDE": ({"method": "guidance"}, SDE(8)),
    "guidance, GLASS": ({"method": "guidance"}, GLASS(8)),
    "FK, GLASS": ({"method": "fk_steering", "particles": 4}, GLASS(2)),
    "FK + guidance, GLASS": ({"method": "fk_steering", "particles": 4, "guidance": {"lam": 0.1}}, GLASS(2)),
    "best-of-4, GLASS": ({"method": "best_of_n", "particles": 4}, GLASS(2)),
    "guidance, flow (ODE)": ({"method": "guidance"}, ODE(8)),
}


def main() -> Path:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--checkpoint", default=None, help="flow .safetensors (default: shipped)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = load_flow(args.checkpoint)
    n, k = args.images, args.samples
    rows: list[tuple[str, list]] = []
    for problem, (op, noise) in PROBLEMS.items():
        reward = Measurement(op, noise=noise)
        shown = None
        for label, (opts, kernel) in METHODS.items():
            task = Inverse(images=n, samples=max(2, k), transitions=5, **opts)
            with torch.inference_mode():
                inputs = task.inputs(model, None, torch.Generator().manual_seed(0), reward, None)
                x, _ = task.run_kernel(model, kernel, inputs, None)
            if shown is None:
                rewards = inputs["rewards"]
                rows.append((f"{problem}\noriginal", [to_pixels(r.original[0]) for r in rewards]))
                rows.append(("y", [to_pixels(r.shown()[0].float()) for r in rewards]))
            shown = True
            per = x.reshape(n, -1, *x.shape[1:])[:, :k]
            rows.append((label, [to_pixels(per[i, j].float()) for i in range(n) for j in range(k)]))
            print(problem, label, flush=True)
    fig = image_rows(plt, rows, n, k, size=(0.75, 0.8))
    fig.suptitle(f"Inverse problems on MNIST: {k} posterior samples per measurement, 40 NFE each", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110, bbox_inches="tight")  # the long row labels are not clipped
    return OUT


if __name__ == "__main__":
    print(main())
