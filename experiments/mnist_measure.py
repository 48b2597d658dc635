"""MNIST measurements for the README: posterior FID vs M, and value-estimate correlation vs M.

Both are ordinary ``glass run`` comparisons (``sampler=compare``), so every run also lands in
outputs/runs/. Results (markdown table, JSON rows, PNG plot) go to ``--out``.

    python experiments/mnist_measure.py posterior [--t 0.05 0.2 0.7] [--points 400] [--steps 2 4 8 16 32]
    python experiments/mnist_measure.py value [--t 0.2] [--points 40] [--n 16] [--truth-n 64] \
        [--truth-steps 50]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from glass.experiment import run
from glass.figtext import label as figure_label
from glass.plotting import plain_log_ticks

SAMPLERS = ["sde", "glass"]


def _compare(task: str, t: float, steps: list[int], extra: list[str], seed: int, model: str) -> list[dict]:
    overrides = [
        f"model={model}",
        f"task={task}",
        f"task.t={t}",
        "sampler=compare",
        f"sampler.samplers=[{','.join(SAMPLERS)}]",
        f"sampler.steps=[{','.join(map(str, steps))}]",
        f"seed={seed}",
        *extra,
    ]
    _, rows = run(overrides)
    for r in rows:
        r["t"], r["kernel"] = t, r["sampler"].split()[0]
    return rows


def _plot(rows: list[dict], key: str, ylabel: str, path: Path, log: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = sorted({r["t"] for r in rows})
    fig, axes = plt.subplots(1, len(ts), figsize=(4.2 * len(ts), 3.6), squeeze=False)
    for ax, t in zip(axes[0], ts):
        for kernel, style in (("sde", "o--"), ("glass", "s-")):
            pts = sorted((r["nfe"], r[key]) for r in rows if r["t"] == t and r["kernel"] == kernel)
            ax.plot(*zip(*pts), style, label=figure_label(kernel))  # "SDE", "GLASS (rho_DDPM)"
        ax.set(xscale="log", title=f"t = {t:g}", xlabel="steps M (= NFE)", ylabel=ylabel)
        if log:
            ax.set_yscale("log")
            plain_log_ticks(ax)
        ticks = sorted({r["nfe"] for r in rows})
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(ticks, labels=[str(m) for m in ticks])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict], key: str, fmt: str) -> str:
    ts = sorted({r["t"] for r in rows})
    steps = sorted({r["nfe"] for r in rows})
    head = "| M (NFE) | " + " | ".join(f"SDE t={t:g} | GLASS t={t:g}" for t in ts) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(ts))]
    for m in steps:
        cells = []
        for t in ts:
            for kernel in ("sde", "glass"):
                (r,) = [r for r in rows if r["t"] == t and r["kernel"] == kernel and r["nfe"] == m]
                cells.append(format(r[key], fmt))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def posterior(args) -> None:
    rows = []
    for t in args.t:
        rows += _compare("posterior", t, args.steps, [f"task.points={args.points}"], args.seed, args.model)
        print(f"done: posterior t={t}", flush=True)
    name = "mnist_posterior_fid"
    _write(args.out, name, rows)
    r0 = rows[0]
    md = (
        _table(rows, "fid", ".1f")
        + f"\n\nFID of posterior samples (one per noised validation image, {r0['fid_n_samples']} images) "
        f"against the {r0['fid_n_reference']} MNIST test images, on the shipped classifier's features; "
        f"seed {args.seed}.\n\nLabel agreement (fraction of posterior samples the classifier puts in the "
        "original image's class):\n\n" + _table(rows, "label_agreement", ".3f")
    )
    (args.out / f"{name}.md").write_text(md + "\n")
    _plot(rows, "fid", "FID (classifier features)", args.out / f"{name}.png", log=True)
    print(md)


def value(args) -> None:
    rows = []
    for t in args.t:
        extra = [
            f"task.points={args.points}",
            f"task.n={args.n}",
            f"task.truth_n={args.truth_n}",
            f"task.truth_steps={args.truth_steps}",
        ]
        rows += _compare("value", t, args.steps, extra, args.seed, args.model)
        print(f"done: value t={t}", flush=True)
    name = "mnist_value_correlation"
    _write(args.out, name, rows)
    r0 = rows[0]
    md = (
        "Pearson correlation:\n\n"
        + _table(rows, "pearson", ".3f")
        + "\n\nSpearman correlation:\n\n"
        + _table(rows, "spearman", ".3f")
        + f"\n\nV_t(x) = log mean exp r(z), r = log p(class 0 | z) under the shipped classifier; "
        f"{r0['n_points']} noised test images, {r0['n_samples']} posterior samples per estimate; "
        f"ground truth: {r0['truth']} (GLASS, rho_DDPM); seed {args.seed}."
    )
    (args.out / f"{name}.md").write_text(md + "\n")
    _plot(rows, "pearson", "Pearson correlation with ground truth", args.out / f"{name}.png", log=False)
    print(md)


def replot(args) -> None:
    """Redraw the PNGs from the committed JSON rows (no recomputation)."""
    for name, key, label, log in (
        ("mnist_posterior_fid", "fid", "FID (classifier features)", True),
        ("mnist_value_correlation", "pearson", "Pearson correlation with ground truth", False),
    ):
        path = args.out / f"{name}.json"
        if path.is_file():
            _plot(json.loads(path.read_text()), key, label, args.out / f"{name}.png", log=log)
            print(f"redrew {args.out / name}.png")


def _write(out: Path, name: str, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("posterior", help="posterior FID vs M for SDE and GLASS")
    a.add_argument("--t", type=float, nargs="+", default=[0.05, 0.2, 0.7])
    a.add_argument("--points", type=int, default=400)
    b = sub.add_parser("value", help="value correlation vs M for SDE and GLASS")
    b.add_argument("--t", type=float, nargs="+", default=[0.2])
    b.add_argument("--points", type=int, default=40)
    b.add_argument("--n", type=int, default=16)
    b.add_argument("--truth-n", type=int, default=64)
    b.add_argument("--truth-steps", type=int, default=50)
    for s in (a, b):
        s.add_argument("--model", default="mnist", choices=["mnist", "mnist_v1"], help="the flow checkpoint")
    c = sub.add_parser("replot", help="redraw the PNGs from the JSON results")
    for s in (a, b, c):
        s.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16, 32])
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = p.parse_args()
    {"posterior": posterior, "value": value, "replot": replot}[args.what](args)


if __name__ == "__main__":
    main()
