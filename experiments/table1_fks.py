"""Paper Table 1 on MNIST (or the oracle): best-of-N and FK steering with ODE / SDE / GLASS
transitions at equal NFE, plus the flow baseline (one ODE sample). ``make table1``.

Every method produces one output per group from ``particles`` paths of K transitions x M steps, so all
rows but the baseline spend particles x K x M NFE per output. Mean reward +- standard error over seeds
(each seed: ``groups`` outputs), with quality beside it: on MNIST the fraction classified as the target
class, FID against that class's test images and diversity (mean pairwise classifier-feature distance);
on the oracle the energy distance to exact samples of the tilted target and the exact E[r].

    python experiments/table1_fks.py [--model mnist|mnist_v1|gmm|gmm64] [--seeds 0 1 2] [--particles 8]
        [--transitions 5] [--steps 2] [--groups 32] [--lam 1.0] [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean, stdev

from glass.experiment import run

METHODS = {
    "Flow baseline (ODE, 1 sample)": ["task=best_of_n", "task.particles=1", "sampler=ode"],
    "BoN-ODE": ["task=best_of_n", "sampler=ode"],
    "BoN-SDE": ["task=best_of_n", "sampler=sde"],
    "BoN-GLASS (ρ_DDPM)": ["task=best_of_n", "sampler=glass"],
    "FKS-SDE": ["task=fk_steering", "sampler=sde"],
    "FKS-GLASS (ρ_DDPM)": ["task=fk_steering", "sampler=glass"],
    "FKS-GLASS (ρ = 0.4)": ["task=fk_steering", "sampler=glass", "sampler.rho=0.4"],
}


def _images(args) -> bool:
    """An MNIST checkpoint (mnist, mnist_v1), not an oracle."""
    return args.model.startswith("mnist")


def measure(args) -> dict[str, list[dict]]:
    results = {}
    for label, overrides in METHODS.items():
        common = [
            f"model={args.model}",
            f"task.transitions={args.transitions}",
            f"task.groups={args.groups}",
            f"sampler.steps={args.steps}",
            "seed=" + ",".join(map(str, args.seeds)),
        ]
        if "task.particles=1" not in overrides:
            common.append(f"task.particles={args.particles}")
        if "fk_steering" in overrides[0]:
            common += [f"task.lam={args.lam}"] + (["task.output=best"] if _images(args) else [])
        _, rows = run([*overrides, *common], multirun=True)
        results[label] = rows
        print(f"done: {label}", flush=True)
    return results


def _ms(rows, key, fmt=".3f") -> str:
    v = [r[key] for r in rows if key in r]
    if not v:
        return "—"
    return f"{mean(v):{fmt}} ± {stdev(v) / len(v) ** 0.5:{fmt}}" if len(v) > 1 else f"{v[0]:{fmt}}"


def table(results, args) -> str:
    oracle = not _images(args)
    cols = ["energy", "exact_reward"] if oracle else ["target_accuracy", "fid", "diversity"]
    head = "| method | NFE per output | reward | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (3 + len(cols))]
    for label, rows in results.items():
        cells = [_ms(rows, c, ".4f" if c == "energy" else ".3f") for c in cols]
        if oracle and "energy_floor" in rows[0]:
            cells[0] += f" (floor {mean(r['energy_floor'] for r in rows):.4f})"
        lines.append(
            f"| {label} | {rows[0]['nfe_per_sample']} | {_ms(rows, 'reward')} | " + " | ".join(cells) + " |"
        )
    r0 = next(iter(results.values()))[0]
    reward = (
        "r = w.z (|w| = 1), exact tilted target" if oracle else "r = log p(class 0 | x), shipped classifier"
    )
    note = (
        f"\n\n{args.model}; {reward}; {args.groups} outputs per seed, seeds {args.seeds} "
        f"(mean ± standard error over seeds); {args.particles} particles, "
        f"K = {args.transitions} transitions x M = {args.steps} steps; "
        f"FK: lam = {args.lam}, difference potential, systematic resampling after every transition, output = "
        + ("the best final particle." if not oracle else "one particle drawn by the final weights.")
    )
    if not oracle:
        note += f" FID: {r0['fid_n_samples']} outputs vs {r0['fid_n_reference']} test images of the class."
    return "\n".join(lines) + note


def convergence(args) -> str:
    """Oracle only: FK-GLASS (rho_DDPM, ``--solver``) draws vs the exact tilted target as particles grow."""
    lines = [
        "| particles | energy to the tilted target (floor) | weighted E[r] | exact E[r] |",
        "|---|---|---|---|",
    ]
    for n in (1, 2, 4, 8, 16, 32, 64):
        overrides = [
            f"model={args.model}", "task=fk_steering", "sampler=glass", f"sampler.steps={args.steps}",
            f"sampler.solver={args.solver}",
            f"task.particles={n}", f"task.transitions={args.transitions}", f"task.groups={args.groups}",
            f"task.lam={args.lam}", "seed=" + ",".join(map(str, args.seeds)),
        ]  # fmt: skip
        _, rows = run(overrides, multirun=True)
        floor = mean(r["energy_floor"] for r in rows)
        lines.append(
            f"| {n} | {_ms(rows, 'energy', '.4f')} ({floor:.4f}) | {_ms(rows, 'reward_weighted')} | "
            f"{rows[0]['exact_reward']:.3f} |"
        )
        print(f"done: {n} particles", flush=True)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist", choices=["mnist", "mnist_v1", "gmm", "gmm64"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--particles", type=int, default=8)
    p.add_argument("--transitions", type=int, default=5)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--groups", type=int, default=32)
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--solver", default="midpoint", choices=["euler", "midpoint"], help="convergence table")
    p.add_argument(
        "--only-convergence", action="store_true", help="keep the committed table, redo convergence"
    )
    p.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = p.parse_args()
    name = f"table1_fks_{'mnist' if _images(args) else args.model}"  # mnist_v1 writes the same file
    if args.only_convergence:
        md = (args.out / f"{name}.md").read_text().split("\n\nFK steering with GLASS")[0]
        results = json.loads((args.out / f"{name}.json").read_text())
    else:
        results = measure(args)
        md = table(results, args)
    if not _images(args):
        md += (
            f"\n\nFK steering with GLASS (ρ_DDPM, {args.solver} inner solver, M = {args.steps}) proposals as "
            "particles grow:\n\n" + convergence(args)
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.md").write_text(md + "\n")
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(md)


if __name__ == "__main__":
    main()
