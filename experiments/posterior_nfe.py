"""Posterior error vs NFE on the 64-D Gaussian-mixture oracle at t = 0.2 (README).

Samplers: GLASS Euler (the paper's), GLASS midpoint (second order), SDE (DDPM, eq. 5) and the
deterministic ODE, all through ``glass.runner`` sweeps (so every job also lands in outputs/).
Error = energy distance between the samples at a conditioning point x_t and exact posterior samples
there, averaged over the task's points (8 x 500 samples), mean +- std over seeds, beside the
exact-vs-exact noise floor.

    python experiments/posterior_nfe.py [--t 0.2] [--n 500] [--seeds 0 1 ... 7] [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from glass.experiment import run
from glass.plotting import plain_log_ticks

SAMPLERS = {
    "GLASS (Euler)": ["sampler=glass", "sampler.solver=euler"],
    "GLASS (midpoint)": ["sampler=glass", "sampler.solver=midpoint"],
    "SDE (DDPM, eq. 5)": ["sampler=sde"],
    "ODE (deterministic)": ["sampler=ode"],
}
NFE_BUDGETS = [1, 2, 4, 8, 16, 32, 64]


def measure(t: float, n: int, seeds: list[int], model: str) -> dict[str, dict[int, list[dict]]]:
    results: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for label, sampler in SAMPLERS.items():
        per_nfe = 2 if "midpoint" in label else 1
        steps = [b // per_nfe for b in NFE_BUDGETS if b >= per_nfe]
        overrides = [
            f"model={model}",
            "task=posterior",
            f"task.t={t}",
            f"task.n={n}",
            *sampler,
            "sampler.steps=" + ",".join(map(str, steps)),
            "seed=" + ",".join(map(str, seeds)),
        ]
        _, rows = run(overrides, multirun=True)
        for row in rows:
            results[label][int(row["nfe"])].append(row)
        print(f"done: {label}")
    return results


def seed_floors(results) -> list[float]:
    """The noise floor of each seed (every job of a seed shares its exact reference, so its floor:
    one value per seed, not one per row, enters the mean and spread)."""
    rows = [r for by_nfe in results.values() for rows in by_nfe.values() for r in rows]
    by_seed = {r["seed"]: r["energy_floor"] for r in rows}
    return [by_seed[k] for k in sorted(by_seed)]


def table(results, t: float, n: int, seeds: list[int]) -> str:
    def cell(rows):
        v = [r["energy"] for r in rows]
        return f"{mean(v):.4f} ± {stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"

    floors = seed_floors(results)
    head = "| NFE | " + " | ".join(results) + " |"
    lines = [head, "|" + "---|" * (len(results) + 1)]
    for b in NFE_BUDGETS:
        lines.append(
            f"| {b} | " + " | ".join(cell(results[k][b]) if b in results[k] else "—" for k in results) + " |"
        )
    lines.append(
        f"\nEnergy distance to the exact posterior p(z | x_t), averaged over 8 conditioning points with "
        f"{n} samples each; d = 64, t = {t}; mean ± std over seeds {seeds}. Noise floor (exact vs "
        f"exact, same n): "
        f"{mean(floors):.4f} ± {stdev(floors):.4f} over the seeds."
    )
    return "\n".join(lines)


def plot(results, path: Path, t: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    floors = seed_floors(results)
    for label, by_nfe in results.items():
        x = sorted(by_nfe)
        values = [[r["energy"] for r in by_nfe[b]] for b in x]
        spread = [stdev(v) if len(v) > 1 else 0.0 for v in values]  # std over seeds, as the table
        ax.errorbar(x, [mean(v) for v in values], yerr=spread, marker="o", capsize=3, label=label)
    level, band = mean(floors), stdev(floors) if len(floors) > 1 else 0.0
    ax.axhline(level, color="0.4", ls="--", lw=1, label="Monte-Carlo noise floor (± std)")
    ax.axhspan(level - band, level + band, color="0.4", alpha=0.15, lw=0)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="NFE per posterior sample",
        ylabel="energy distance to exact posterior",
        title=f"Posterior sampling on the 64-D oracle, t = {t:g}\n(mean ± std over {len(floors)} seeds)",
    )
    ax.set_xticks(NFE_BUDGETS, [str(b) for b in NFE_BUDGETS])
    plain_log_ticks(ax)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t", type=float, default=0.2)
    ap.add_argument("--n", type=int, default=500, help="posterior samples per conditioning point")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--model", default="gmm64")
    ap.add_argument("--out", type=Path, default=Path("experiments/results"))
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the committed JSON only")
    args = ap.parse_args()
    stem = f"posterior_nfe_{args.model}_t{args.t:g}"
    if args.replot:  # JSON keys are strings: the NFE budgets back to integers
        raw = json.loads((args.out / f"{stem}.json").read_text())
        results = {k: {int(b): rows for b, rows in v.items()} for k, v in raw.items()}
        plot(results, args.out / f"{stem}.png", args.t)
        print(f"redrew {args.out / stem}.png")
        return
    results = measure(args.t, args.n, args.seeds, args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    md = table(results, args.t, args.n, args.seeds)
    (args.out / f"{stem}.md").write_text(md + "\n")
    raw = {k: {b: rows for b, rows in v.items()} for k, v in results.items()}
    (args.out / f"{stem}.json").write_text(json.dumps(raw, indent=1))
    plot(results, args.out / f"{stem}.png", args.t)
    print(md)
    print(f"written: {args.out / stem}.{{md,json,png}}")


if __name__ == "__main__":
    main()
