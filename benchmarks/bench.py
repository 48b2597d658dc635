"""``make bench``: speed measurements, written to benchmarks/results/ (JSON + markdown, with machine
info). Never timed assertions in tests: the numbers live here.

Overhead: wall time of M-step transitions (GLASS, SDE, ODE) against the same number of bare denoiser
calls at the same batch size, on the MNIST UNet (network-bound) and the 64-D Gaussian-mixture oracle
(where the "network" is cheap and any sampler overhead shows). Ratio 1.00 = nothing beyond the network.
Plus the wall time of the default ``glass run``.

    python benchmarks/bench.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

import glass
from glass.models.gmm import random_mixture
from glass.models.mnist import load_flow


def machine() -> dict:
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "glass": glass.__version__,
    }


def _median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def overhead(model, batch: int, steps: int, reps: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *model.shape), generator=g, dtype=torch.float64)
    t, t_next = 0.2, 0.6
    kernels = {"glass": glass.GLASS(steps), "sde": glass.SDE(steps), "ode": glass.ODE(steps)}

    def bare():
        for i in range(steps):
            model.denoise(x, t + (t_next - t) * i / steps)

    base = _median_time(bare, reps)
    out = {"batch": batch, "steps": steps, "bare_s": base}
    for name, kernel in kernels.items():
        model.reset_nfe()
        kernel.transition(model, x, t, t_next, generator=g)
        nfe = model.reset_nfe()
        assert nfe == steps, (name, nfe)
        wall = _median_time(lambda k=kernel: k.transition(model, x, t, t_next, generator=g), reps)
        out[f"{name}_s"] = wall
        out[f"{name}_ratio"] = wall / base
    return out


def default_run() -> float:
    out = Path("outputs/bench")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "glass.cli", "run", f"out_dir={out}"], check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--quick", action="store_true", help="small batches and fewer repetitions")
    args = ap.parse_args()
    reps = 3 if args.quick else 5
    results = {"machine": machine(), "overhead": []}
    mnist = load_flow()
    for batch in (1, 16) if args.quick else (1, 64, 256):
        r = overhead(mnist, batch, 8, reps if batch < 256 else 3)
        results["overhead"].append({"model": "mnist UNet", **r})
        print(results["overhead"][-1], flush=True)
    oracle = random_mixture(dim=64, n_components=8, scale=1.0, std=0.3, seed=0)
    for batch in (256, 4096):
        r = overhead(oracle, batch, 8, reps)
        results["overhead"].append({"model": "64-D oracle", **r})
        print(results["overhead"][-1], flush=True)
    if not args.quick:
        results["default_run_s"] = default_run()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"{m['date']}; {m['platform']}; {m['cpu_count']} CPU cores, torch {m['torch']} "
        f"({m['torch_threads']} threads); GPU: {m['cuda'] or 'none'}.",
        "",
        "## Overhead: one transition of M = 8 steps vs 8 bare denoiser calls (t = 0.2 -> 0.6)",
        "",
        "Ratio = transition wall time / bare calls' wall time (median of repetitions); 1.00 means the",
        "sampler adds nothing measurable beyond the network.",
        "",
        "| model | batch | bare calls (s) | GLASS ratio | SDE ratio | ODE ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["overhead"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['bare_s']:.4f} | {r['glass_ratio']:.3f} | "
                     f"{r['sde_ratio']:.3f} | {r['ode_ratio']:.3f} |")  # fmt: skip
    if "default_run_s" in results:
        lines += [
            "",
            f"Default `glass run` (MNIST posterior comparison), wall time: {results['default_run_s']:.1f} s.",
        ]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
