"""Sample quality of an MNIST flow checkpoint (issue: a stronger shipped model): ODE samples at
50 NFE (5 transitions x 10 Euler steps, the paper's Table 4 budget) against the 10,000 test images,
in the shipped classifier's features and in Inception-v3 features, beside the floor (as many
*training* images against the same test images, drawn at random: the mean over ``--floor-subsets``
seeded random subsets in the classifier's features, one in Inception's) and a sample grid.
``--floor-only`` recomputes the floors of an existing ``<name>.json`` without sampling again (after
a change to the floor; the samples' FIDs are kept). ``--method heun`` samples with 5 x 5 Heun steps
instead (49 NFE, the same budget): how much of the gap to the floor is the Euler discretisation and
not the network.

Writes experiments/results/mnist_flow_quality.{json,md} and mnist_flow_quality.png, rewritten after each
feature space (a run stopped during Inception keeps the classifier-feature FID). 10,000 samples
take about 2 hours on 2 CPU cores, most of it Inception's (minutes on a GPU: ``--device cuda``); ``--n 2000``
for a quicker look, ``--inception-n 2000`` to score only the first 2,000 samples in Inception features.

    python experiments/flow_quality.py [--checkpoint glass/assets/mnist_flow.safetensors] [--n 10000]
                                       [--inception-n N] [--name mnist_flow_quality] [--floor-only]
                                       [--method euler|heun] [--grid-only]

``--grid-only`` redraws ``<name>.png`` from an existing ``<name>.json`` (its first 100 samples drawn
again exactly as the run drew them; FIDs and floors kept).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from glass.data import load_mnist
from glass.metrics.fid import FID
from glass.models.mnist import ASSETS, load_flow, to_data, to_pixels
from glass.samplers import ODE, generate

ROOT = Path(__file__).resolve().parents[1]  # the repository: files are named relative to it
OUT = ROOT / "experiments" / "results"
FLOOR_SEED = 0
GRID = 100  # samples in the grid (10 x 10)
STEPS = {"euler": 10, "heun": 5}  # ODE steps per transition (5 transitions): 50 and 49 NFE


def floor(fid: FID, train: torch.Tensor, n: int, subsets: int, seed: int = FLOOR_SEED) -> dict:
    """The FID a perfect model would score with ``n`` samples: ``subsets`` random n-subsets of the
    training images (seeded) against the same reference: their mean and the values.
    Random, not the first n: the first 10,000 training images score 4.20 in the classifier's features
    where random 10,000-subsets score 2.96-3.52 (the training file's order is not random)."""
    g = torch.Generator().manual_seed(seed)
    values = [fid(to_data(train[torch.randperm(len(train), generator=g)[:n]]))["fid"] for _ in range(subsets)]
    return {"floor": statistics.fmean(values), "floor_subsets": values}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="a .safetensors beside its .json (default: shipped)")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default="mnist_flow_quality")
    ap.add_argument("--features", nargs="+", default=["mnist", "inception"], choices=["mnist", "inception"])
    ap.add_argument("--inception-n", type=int, default=None,
                    help="score only the first N samples (and N training images) in Inception features "
                         "(about 0.2 s per image on 2 CPU cores); default: all")  # fmt: skip
    ap.add_argument("--floor-subsets", type=int, default=5,
                    help="random training subsets averaged for the classifier-feature floor (default 5; "
                         "Inception's floor uses one: 0.2 s per image on 2 CPU cores)")  # fmt: skip
    ap.add_argument("--method", default="euler", choices=list(STEPS),
                    help="ODE solver: euler (5 x 10 steps, 50 NFE, the paper's budget; default) or heun "
                         "(5 x 5 steps, 49 NFE: the last step, into t = 1, is Euler)")  # fmt: skip
    ap.add_argument("--floor-only", action="store_true",
                    help="recompute the floors of an existing <name>.json (no sampling; FIDs kept)")
    ap.add_argument("--grid-only", action="store_true",
                    help="redraw <name>.png from an existing <name>.json: its first 100 samples drawn "
                         "again exactly as the run drew them (FIDs and floors kept)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.grid_only and args.floor_only:
        ap.error("--grid-only and --floor-only redraw different things; pass one of them")
    if args.grid_only:
        return grid_only(args.name, args.device)
    if args.floor_subsets < 1:
        ap.error(f"--floor-subsets must be at least 1, got {args.floor_subsets}")
    if args.floor_only:  # the stored run's sizes
        return floors_only(args)
    if args.n < 2:  # a Fréchet distance needs a covariance: two samples at least
        ap.error(f"--n must be at least 2, got {args.n}")
    if args.batch < 1:
        ap.error(f"--batch must be at least 1, got {args.batch}")
    if args.inception_n is not None and not 2000 <= args.inception_n <= args.n:
        ap.error(f"--inception-n must be between 2000 and --n ({args.n}), got {args.inception_n}")
    model = load_flow(args.checkpoint, device=args.device)
    start = time.perf_counter()
    x, nfe = sample(model, args.method, args.n, args.batch, args.device)
    minutes = (time.perf_counter() - start) / 60
    train, _ = load_mnist("train")
    checkpoint = Path(args.checkpoint or ASSETS / "mnist_flow.safetensors").resolve()
    manifest = json.loads(checkpoint.with_suffix(".json").read_text())
    shown = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
    rows = {}
    out = {"checkpoint": str(shown), "n": args.n, "batch": args.batch, "nfe": nfe, "method": args.method,
           "sampling_minutes": round(minutes, 1), "device": args.device, "fid": rows,
           "total_steps": manifest.get("total_steps")}  # fmt: skip
    for features in args.features:  # the files are rewritten after each: a long Inception pass loses nothing
        n = (args.inception_n or args.n) if features == "inception" else args.n
        fid = FID(features=features)
        floors = floor(fid, train, n, subsets(args, features))
        rows[features] = {"samples": fid(x[:n])["fid"], "n": n, **floors}
        print(features, rows[features], flush=True)
        write(out, x, args.name)
    return out


def sample(model, method: str, n: int, batch: int, device: str, log: bool = True) -> tuple[torch.Tensor, int]:
    """``n`` ODE samples (5 transitions of ``STEPS[method]`` steps) in batches of ``batch``, the batch
    starting at row i seeded i (on ``device``), on the CPU as float32; and the NFE per sample."""
    kernel = ODE(STEPS[method], method)
    xs = []
    for i in range(0, n, batch):
        g = torch.Generator(device=device).manual_seed(i)
        model.reset_nfe()
        xs.append(generate(model, kernel, 5, n=min(batch, n - i), generator=g).float().cpu())
        nfe = model.nfe  # per sample: the wrapper counts calls, whatever the batch (the same in every batch)
        if log:
            print(f"{i + len(xs[-1])}/{n} samples", flush=True)
    return torch.cat(xs), nfe


def grid_only(name: str, device: str = "cpu") -> dict:
    """The sample grid of a finished run again, from its JSON: the checkpoint and solver it names, its
    first GRID samples drawn as the run drew them (the batches that hold them, each of the run's size
    and seed on the run's device: the same prior draws, and the ODE adds no noise; runs before the
    batch was recorded used the default, 500)."""
    path = OUT / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"--grid-only: {path} does not exist (run without --grid-only first)")
    out = json.loads(path.read_text())
    if torch.device(out["device"]).type != torch.device(device).type:
        run = out["device"]
        raise SystemExit(f"--grid-only: {name} sampled on {run}; redraw it with --device {run} (another "
                         "device draws other prior noise)")  # fmt: skip
    batch = out.get("batch", 500)
    model = load_flow(str(ROOT / out["checkpoint"]), device=device)
    method = out.get("method", "euler")
    shown = min(GRID, out["n"])
    rows = min(out["n"], -(-shown // batch) * batch)  # the whole batches that hold the shown samples
    x, _ = sample(model, method, rows, batch, device, log=False)
    write(out, x[:shown], name)
    return out


def subsets(args, features: str) -> int:
    return args.floor_subsets if features == "mnist" else 1


def floors_only(args) -> dict:
    """Recompute the floors of ``<name>.json`` (same samples' FIDs), rewrite its .json and .md."""
    path = OUT / f"{args.name}.json"
    if not path.is_file():
        raise SystemExit(f"--floor-only: {path} does not exist (run without --floor-only first)")
    out = json.loads(path.read_text())
    train, _ = load_mnist("train")
    for features, row in out["fid"].items():
        row.update(floor(FID(features=features), train, row["n"], subsets(args, features)))
        print(features, row, flush=True)
    write(out, None, args.name)
    return out


def write(out: dict, x: torch.Tensor | None, name: str) -> None:
    """``<name>.json``, ``.md`` (the table) and ``.png`` (up to 100 samples, titled by ``grid_title``)."""
    rows = out["fid"]
    method = out.get("method", "euler")  # files written before --method are Euler
    solver = "" if method == "euler" else f" ({method.title()})"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        f"# MNIST flow sample quality: ODE at {out['nfe']} NFE{solver} vs the 10,000 test images",
        "",
        f"Checkpoint `{out['checkpoint']}` ({out['total_steps']} training steps). Floor: as many training "
        "images as samples, drawn at random, against the same test images (what a perfect model would "
        "score at that sample size); mean ± standard deviation over seeded random subsets "
        f"(seed {FLOOR_SEED}).",
        "",
        "| features | samples | FID of samples | floor (train vs test) | floor subsets | ratio |",
        "|---|---|---|---|---|---|",
        *(
            f"| {k} | {v['n']} | {v['samples']:.2f} | {floor_text(v)} | {len(v['floor_subsets'])} "
            f"| {v['samples'] / v['floor']:.2f} |"
            for k, v in rows.items()
        ),  # fmt: skip
    ]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    if x is None:  # --floor-only: the sample grid is unchanged
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(math.isqrt(GRID), math.isqrt(len(x)))  # a k x k grid of the first samples (10 x 10 from 100 on)
    grid = to_pixels(x[: k * k]).reshape(k, k, 28, 28).permute(0, 2, 1, 3).reshape(28 * k, 28 * k)
    fig, ax = plt.subplots(figsize=(5, 5 + 0.15 * len(rows)))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set(title=grid_title(out), xticks=[], yticks=[])
    ax.title.set_fontsize(8)
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=110)
    plt.close(fig)


def grid_title(out: dict) -> str:
    """The sample grid's title: the checkpoint and its training steps, the solver, each FID beside its
    floor and sample count."""
    method = out.get("method", "euler")
    words = {"mnist": "classifier", "inception": "Inception"}
    steps = f"5 × {STEPS[method]} {method.title()} steps ({out['nfe']} NFE)"
    fids = "\n".join(f"{words[k]} FID {v['samples']:.1f} (train-vs-test floor {v['floor']:.1f}), "
                      f"{v['n']:,} samples" for k, v in out["fid"].items())  # fmt: skip
    trained = f", {out['total_steps']:,} training steps" if out.get("total_steps") else ""
    return f"{Path(out['checkpoint']).stem}{trained}\nODE, {steps}\n{fids}"


def floor_text(row: dict) -> str:
    """The floor's mean, ± the subsets' standard deviation where there are several."""
    values = row["floor_subsets"]
    return f"{row['floor']:.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


if __name__ == "__main__":
    main()
