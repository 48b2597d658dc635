"""``make bench``: speed and accuracy measurements, written to benchmarks/results/ (JSON + markdown +
plots, with machine info). Never timed assertions in tests: the numbers live here.

Sections (each can be run alone with ``--only``):

- ``overhead``: wall time of one M = 8 transition (GLASS, SDE, ODE) against 8 bare denoiser calls at
  the same batch, on the MNIST UNet (network-bound) and the 64-D oracle (where the "network" is cheap
  and sampler overhead shows). Repetitions are interleaved (bare, GLASS, SDE, ODE, bare, ...) so
  machine drift hits every column alike; the ratio is median(kernel) / median(bare).
- ``loop``: the sampler's own cost per inner step beyond the network, on a cheap network where it
  shows: a 2-D MLP velocity model (sinusoidal time embedding 16, hidden 128, Swish), batch 1, 256,
  4096: one GLASS M = 8 transition with the denoiser folded into the update (``Model.affine``, the
  default for networks behind ``from_prediction``) and with the plain loop (``denoise`` per step),
  against 8 bare calls of the network on the same inputs.
- ``accuracy``: error vs NFE on the oracle for posterior sampling and a transition, and the NFE each
  kernel needs to reach fixed target errors (``benchmarks/accuracy.py``).
- ``mnist``: posterior FID vs NFE on MNIST (``glass run task=posterior model=mnist``).
- ``fk``: FK steering throughput (particle-steps per second) and peak memory vs particles and chunk.
- ``default``: wall time of the default ``glass run``.
- ``train``: one step of ``glass train flow`` (batch 64) in float32 and under bfloat16 autocast
  (``trainer.precision``), interleaved.
With ``--device cuda`` (results in ``bench-cuda.*``) the sections that run on the device, ``overhead``,
``loop``, ``fk`` and ``train``, are the default and the only ones taken; ``overhead`` then also counts
the host-device synchronisations inside a GLASS transition (``torch.cuda.set_sync_debug_mode``) and
adds ``--dtype`` / ``--compile`` rows. ``--quick`` (small sizes, fewer repetitions) writes to
``outputs/bench-quick`` unless ``--out`` says otherwise, so it never replaces the committed results.

    python benchmarks/bench.py [--quick] [--only overhead,accuracy,...] [--device cuda]
        [--dtype bfloat16] [--compile] [--batches 1,64,256] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import accuracy  # noqa: E402

import glass  # noqa: E402
from glass.models.gmm import random_mixture  # noqa: E402
from glass.models.mnist import load_flow  # noqa: E402

SECTIONS = ["overhead", "loop", "fk", "default", "train", "accuracy", "mnist"]
ON_DEVICE = ["overhead", "loop", "fk", "train"]  # the sections that run on --device (the rest: the CPU)


def machine(device: str) -> dict:
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "python": sys.version.split()[0],
        "glass": glass.__version__,
    }


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict, reps: int, device="cpu") -> dict[str, float]:
    """Median wall time of each callable, repetitions interleaved round-robin after one warm-up."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    _sync(device)
    for _ in range(reps):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def mnist_model(device: str, dtype: str, compile_net: bool):
    model = load_flow(device=device)
    if dtype != "float32":
        model.dtype = getattr(torch, dtype)
        model.net = model.net.to(model.dtype)
    if compile_net:
        model.compile()
    return model


@torch.inference_mode()
def overhead(model, batch: int, steps: int, reps: int, device="cpu") -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    t, t_next = 0.2, 0.6
    if hasattr(model, "sample_marginal"):  # realistic inputs (far-off points underflow the oracle's exp)
        x = model.sample_marginal(batch, t, torch.Generator().manual_seed(0)).to(device)
    else:
        x = torch.randn((batch, *model.shape), generator=g, dtype=torch.float64, device=device)
    kernels = {"glass": glass.GLASS(steps), "sde": glass.SDE(steps), "ode": glass.ODE(steps)}
    times = torch.linspace(t, t_next, steps + 1, dtype=torch.float64)[:-1].to(device)

    def bare():
        for i in range(steps):
            model.denoise(x, times[i])

    for name, kernel in kernels.items():
        model.reset_nfe()
        kernel.transition(model, x, t, t_next, generator=g)
        assert model.reset_nfe() == steps, name
    fns = {"bare": bare} | {
        k: (lambda k=k: kernels[k].transition(model, x, t, t_next, generator=g)) for k in kernels
    }
    med = interleaved(fns, reps, device)
    out = {"batch": batch, "steps": steps, "bare_s": med["bare"]}
    for k in kernels:
        out[f"{k}_s"], out[f"{k}_ratio"] = med[k], med[k] / med["bare"]
    return out


class ToyMLP(torch.nn.Module):
    """The 2-D velocity network of flow-matching tutorials: sinusoidal time embedding (16), three
    hidden layers of 128 with Swish."""

    def __init__(self, dim: int = 2, emb: int = 16, hidden: int = 128):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, 6, emb // 2)))
        act = torch.nn.SiLU
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + emb, hidden), act(), torch.nn.Linear(hidden, hidden), act(),
            torch.nn.Linear(hidden, hidden), act(), torch.nn.Linear(hidden, dim),
        )  # fmt: skip

    def forward(self, x, t):
        e = t[:, None] * self.freqs
        return self.net(torch.cat([x, torch.sin(e), torch.cos(e)], dim=1))


@torch.inference_mode()
def loop_overhead(batch: int, reps: int, steps: int = 8, device: str = "cpu") -> dict:
    """Seconds per inner step beyond the network: (transition - bare calls) / M, for the folded and the
    plain eager loops, the eager loop on the ``torch.compile``'d network, and the whole transition
    compiled with the network (``GLASS(compile=...)``), each against bare calls of its network. On a
    GPU both compile with CUDA graphs (``mode="reduce-overhead"``)."""
    torch.manual_seed(0)
    torch._dynamo.reset()  # graphs specialised to this batch (a new batch in one process goes dynamic)
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else "default"
    net = ToyMLP().eval().to(device)
    cnet = torch.compile(net, mode=mode)
    model = glass.from_prediction(net, "velocity", "linear", shape=(2,), device=device)
    model_cnet = glass.from_prediction(cnet, "velocity", "linear", shape=(2,), device=device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 2, dtype=torch.float64, generator=g, device=device)
    x_net, t_net = x.float(), torch.full((batch,), 0.4, device=device)
    kernel, compiled = glass.GLASS(steps, rho=0.4), glass.GLASS(steps, rho=0.4, compile=mode)

    class Plain(glass.models.CallableModel):  # the same model with the denoiser called per step
        def affine(self, t):
            return None

    plain = Plain(net, "velocity", "linear", shape=(2,), device=device)

    def bare(f):
        def calls():
            for _ in range(steps):
                f(x_net, t_net)

        return calls

    fns = {
        "bare": bare(net),
        "bare_compiled": bare(cnet),
        "folded": lambda: kernel.transition(model, x, 0.3, 0.6, generator=g),
        "plain": lambda: kernel.transition(plain, x, 0.3, 0.6, generator=g),
        "net_compiled": lambda: kernel.transition(model_cnet, x, 0.3, 0.6, generator=g),
        "compiled": lambda: compiled.transition(model, x, 0.3, 0.6, generator=g),
    }
    med = interleaved(fns, reps, device)
    out = {"batch": batch, "steps": steps, "bare_s": med["bare"], "bare_compiled_s": med["bare_compiled"],
           "compile_mode": mode}  # fmt: skip
    for k, base in (("folded", "bare"), ("plain", "bare"), ("net_compiled", "bare_compiled"),
                    ("compiled", "bare_compiled")):  # fmt: skip
        out[f"{k}_s"], out[f"{k}_ratio"] = med[k], med[k] / med[base]
        out[f"{k}_us_per_step"] = (med[k] - med[base]) / steps * 1e6
    out["compiled_vs_eager_bare"] = med["compiled"] / med["bare"]
    return out


def sync_check(model, batch: int, device: str) -> str:
    """Count host-device synchronisations in one M = 8 transition with CUDA sync debugging: the
    inner loop has none; the NaN/Inf check after it is the one expected synchronisation."""
    import warnings

    x = torch.randn((batch, *model.shape), dtype=torch.float64, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    results = []
    with torch.inference_mode():
        for kernel in (glass.GLASS(8), glass.GLASS(8, solver="multistep"), glass.SDE(8)):
            kernel.transition(model, x, 0.2, 0.6, generator=g)  # warm-up (allocator, cudnn)
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    kernel.transition(model, x, 0.2, 0.6, generator=g)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            where = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
            results.append(f"{kernel!r}: {len(where)} ({', '.join(where) or 'none'})")
    return "; ".join(results)


def fk_point(model_name: str, particles: int, chunk: int | None, device: str) -> dict:
    """One FK steering run (K = 4 transitions of GLASS M = 2); wall time and peak memory."""
    from glass.alignment.fk import fk_steering

    if model_name == "mnist":
        model = load_flow(device=device)
        from glass.rewards.classifier import ClassifierLogProb

        reward = ClassifierLogProb(0)
    else:  # the oracle's closed forms live on the CPU
        device = "cpu"
        model = random_mixture(dim=64, n_components=8, scale=1.0, std=0.3, seed=0)
        w = torch.ones(64, dtype=torch.float64) / 8
        reward = lambda z: z.double() @ w.to(z.device)  # noqa: E731
    kernel, grid = glass.GLASS(2), 4
    g = torch.Generator(device=device).manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    page = os.sysconf("SC_PAGE_SIZE")
    rss0 = int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20  # MiB now
    with torch.inference_mode():
        fk_steering(model, kernel, reward, grid, particles=particles, groups=1, chunk=chunk, generator=g)
        _sync(device)
        start = time.perf_counter()
        res = fk_steering(
            model, kernel, reward, grid, particles=particles, groups=1, chunk=chunk, generator=g
        )
        _sync(device)
        wall = time.perf_counter() - start
    steps = particles * grid * kernel.steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    )
    return {
        "model": model_name,
        "particles": particles,
        "chunk": chunk,
        "wall_s": wall,
        "nfe": res.nfe,
        "particle_steps_per_s": steps / wall,
        "peak_mib": peak,
        "peak_kind": "cuda max allocated" if device.startswith("cuda") else "CPU peak RSS increase",
    }


def fk_sweep(quick: bool, device: str) -> list[dict]:
    """Each point in a fresh process, so the process-wide peak RSS belongs to that point alone."""
    grid = [
        ("gmm64", p, c) for p, c in [(256, None), (4096, None), (4096, 512), (16384, None), (16384, 1024)]
    ]
    sizes = [(8, None), (32, None), (32, 8), (64, None), (64, 16)]
    if device.startswith("cuda"):
        sizes = [(64, None), (256, None), (1024, None), (1024, 256), (4096, None), (4096, 1024)]
    grid += [("mnist", p, c) for p, c in sizes]
    if quick:
        grid = [g for g in grid if g[1] <= 4096 and g[0] == "gmm64" or g[0] == "mnist" and g[1] <= 8]
    rows = []
    for name, p, c in grid:
        cmd = [sys.executable, __file__, "--fk-point", f"{name},{p},{c or 0}", "--device", device]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fk point {name} {p} {c} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def mnist_fid(quick: bool) -> dict:
    """Posterior FID (t = 0.2, 256 validation images, one posterior sample each) vs NFE on MNIST."""
    from glass.experiment import run

    steps = [2, 4] if quick else [2, 4, 8, 16]
    common = ["model=mnist", "task=posterior", "task.t=0.2", "out_dir=outputs/bench/mnist"]
    _, rows = run(
        [
            *common,
            "sampler=compare",
            "sampler.samplers=[glass,sde,ddpm]",
            f"sampler.steps=[{','.join(map(str, steps))}]",
        ]
    )
    _, more = run(
        [*common, "sampler=glass", "sampler.solver=multistep", f"sampler.steps={','.join(map(str, steps))}"],
        multirun=True,
    )
    return {"t": 0.2, "points": 256, "rows": [*rows, *more]}


def default_run(*overrides: str) -> float:
    """Wall time of ``glass run`` with a cold FID cache (a fresh out_dir)."""
    out = Path("outputs/bench")
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "glass.cli", "run", *overrides, f"out_dir={out}"]
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


@torch.inference_mode()
def batching(reps: int) -> dict:
    """Per-image cost of the MNIST UNet on 256 images in one call vs in chunks (``model.chunk``), and
    of the classifier's FID features of 2,000 images at batch sizes (``extract_features``); the
    outputs are compared bit for bit."""
    from glass.metrics.fid import extract_features

    model = load_flow(chunk=None)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(256, 1, 28, 28, generator=g), torch.rand(256, generator=g)
    chunks = {"256 (one call)": None, "128": 128, "64": 64, "32": 32}

    def unet(c):
        def call():
            model.chunk = c
            return model.raw_network(x, t, {})

        return call

    med = interleaved({k: unet(c) for k, c in chunks.items()}, reps)
    outs = [unet(c)() for c in chunks.values()]
    net, z = model.classifier(), torch.randn(2000, 1, 28, 28, generator=g)
    sizes = (500, 256, 128, 64)
    fmed = interleaved({b: (lambda b=b: extract_features(net.features, z, b)) for b in sizes}, reps)
    feats = [extract_features(net.features, z, b) for b in sizes]
    return {
        "unet_ms_per_image": {k: v / 256 * 1e3 for k, v in med.items()},
        "unet_identical": all(torch.equal(outs[0], o) for o in outs[1:]),
        "features_us_per_image": {str(b): fmed[b] / 2000 * 1e6 for b in sizes},
        "features_identical": all(torch.equal(feats[0], f) for f in feats[1:]),
    }


def train_steps(reps: int, device: str = "cpu", batch: int = 64) -> dict:
    """Seconds per ``glass train flow`` step (``FlowTrainer.train_step``: forward, backward, clipping,
    AdamW) at each ``trainer.precision``, each on its own copy of the UNet, interleaved."""
    from glass.models.mnist import flow_unet
    from glass.train.flow import PRECISIONS, FlowTrainer

    g = torch.Generator().manual_seed(0)
    x, v = (torch.randn(batch, 1, 28, 28, generator=g).to(device) for _ in range(2))
    t = torch.rand(batch, generator=g).to(device)

    def step(precision):
        torch.manual_seed(0)
        trainer, net = FlowTrainer(precision=precision, warmup_steps=1), flow_unet().to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        return lambda: trainer.train_step(net, opt, x, t, v, 0).item()

    med = interleaved({p: step(p) for p in PRECISIONS}, reps, device)
    return {"batch": batch, "threads": torch.get_num_threads(), "s_per_step": med}  # dated by main


# -- report ------------------------------------------------------------------------------------------
FLOORED = 1e-4  # an excess at or below this (negative too: under the floor) is drawn here, hollow


def accuracy_png(stem: str) -> str:
    """The accuracy figure's name beside ``<stem>.md``: a GPU run's does not overwrite the CPU's."""
    return "accuracy.png" if stem == "bench" else f"{stem}-accuracy.png"


def accuracy_plot(acc: dict, path: Path) -> None:
    """Fréchet error above the Monte-Carlo floor per NFE, one panel per case, with the README table's
    targets (2 % and 0.5 % of tr Cov) as lines; an excess at or below FLOORED is drawn at FLOORED
    as a hollow marker (the kernel is at the floor), not as a measured value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(acc), figsize=(6 * len(acc), 4.5), squeeze=False)
    for ax, (name, r) in zip(axes[0], acc.items()):
        for i, (label, rows) in enumerate(r["kernels"].items()):
            nfe = [x["nfe"] for x in rows]
            excess = [x["frechet"] - r["frechet_floor"] for x in rows]
            style = dict(color=f"C{i}", ls="--" if "SDE" in label or "DDPM" in label else "-")
            name_ = label.replace("t*-grid", "t*-uniform grid")
            ax.plot(nfe, [max(e, FLOORED) for e in excess], marker="o", label=name_, **style)
            low = [(n, FLOORED) for n, e in zip(nfe, excess) if e <= FLOORED]
            if low:
                ax.plot(*zip(*low), ls="none", marker="o", mfc="white", color=f"C{i}")
        for f, ls in zip(r.get("targets", []), (":", "-.")):
            ax.axhline(f * r["trace_cov"], color="0.3", lw=0.9, ls=ls, label=f"target: {f:.1%} of tr Cov")
        ax.set(xscale="log", yscale="log", xlabel="NFE per sample", ylabel="Fréchet error above the floor",
               title=f"{name}: t = {r['t']:g} → {r['t_next']:g} (64-D oracle)")  # fmt: skip
        ax.set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    note = f"hollow: at or below the Monte-Carlo floor (excess ≤ {FLOORED:g}, drawn at {FLOORED:g})"
    fig.text(0.5, 0.01, note, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measured(results: dict, section: str) -> str:
    """The "Measured DATE." line of ``section`` (``--only`` reruns some sections, so each has its own;
    ``dates[section]`` is written when the section finishes, so a failed run dates nothing it missed)."""
    dates = results.get("dates", {})
    date = dates.get(section)
    if not date:
        return "Date not recorded."
    mnist = dates.get("overhead_mnist")  # --batches none reruns the oracle rows only
    if section == "overhead" and mnist and mnist != date:
        return f"Measured {date} (the MNIST UNet rows {mnist})."
    return f"Measured {date}."


def markdown(results: dict, plot: str = "accuracy.png") -> str:
    """bench.md from bench.json; ``plot``: the accuracy figure beside it (``accuracy_png(stem)``)."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"{m['platform']}; {m['cpu_count']} CPU cores, torch {m['torch']} "
        f"({m['torch_threads']} threads); device {m['device']}; GPU: {m['gpu'] or 'none'}. Last written "
        f"{m['date']}; `--only` reruns some sections, so each gives the date it was measured.",
        "",
    ]
    if "overhead" in results:
        lines += [
            "## Overhead: one transition of M = 8 steps vs 8 bare denoiser calls (t = 0.2 -> 0.6)",
            "",
            measured(results, "overhead"),
            "",
            "Ratio = median transition wall time / median wall time of the bare calls, repetitions",
            "interleaved; 1.00 means the sampler adds nothing measurable beyond the network.",
            "",
            "| model | dtype | batch | bare calls (s) | GLASS ratio | SDE ratio | ODE ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["overhead"]:
            lines.append(
                f"| {r['model']} | {r.get('dtype', 'float32')} | {r['batch']} | {r['bare_s']:.4f} | "
                f"{r['glass_ratio']:.3f} | {r['sde_ratio']:.3f} | {r['ode_ratio']:.3f} |"
            )
        if "sync_check" in results:
            lines += [
                "",
                f"Host-device synchronisations (CUDA sync debugging): {results['sync_check']}.",
                "GLASS's one is the NaN/Inf check after the inner loop; the loop itself never synchronises.",
            ]
    if "loop" in results:
        lines += [
            "",
            "## The sampler's own cost on a cheap network (2-D MLP, GLASS M = 8, rho = 0.4)",
            "",
            f"{measured(results, 'loop')} Microseconds per inner step beyond the network",
            "= (transition - 8 bare network calls) / 8, medians of interleaved repetitions (negative:",
            "faster than the bare calls). Eager loops: folded, the denoiser folded into the update",
            "(`Model.affine`, the default for `from_prediction`); plain, `denoise` per step (the loop",
            "before the fold); both against bare eager calls. Compiled network: the eager folded loop on",
            "`torch.compile(net)`, against bare calls of the compiled network. Compiled transition:",
            "`GLASS(compile=True)`, the whole transition one inductor graph with the network, against the",
            "compiled network's bare calls and (last column) the eager network's. Graphs specialised to",
            "each batch; on a GPU both compile with CUDA graphs (`reduce-overhead`). On the shared 2-core",
            "VM repeated runs vary by about +-30 %.",
            "",
            "| batch | bare calls (ms) | folded: us/step | folded ratio | plain: us/step | plain ratio "
            "| bare compiled (ms) | compiled net: us/step | ratio | compiled transition: us/step | ratio "
            "| compiled transition / eager bare |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["loop"]:
            cols = [f"{r['bare_s'] * 1e3:.3f}"]
            for k in ("folded", "plain"):
                cols += [f"{r[k + '_us_per_step']:.0f}", f"{r[k + '_ratio']:.3f}"]
            if "compiled_s" in r:
                cols.append(f"{r['bare_compiled_s'] * 1e3:.3f}")
                for k in ("net_compiled", "compiled"):
                    cols += [f"{r[k + '_us_per_step']:.0f}", f"{r[k + '_ratio']:.3f}"]
                cols.append(f"{r['compiled_vs_eager_bare']:.3f}")
            else:
                cols += ["—"] * 6
            lines.append(f"| {r['batch']} | " + " | ".join(cols) + " |")
    if "accuracy" in results:
        lines += [
            "",
            "## Accuracy per NFE on the 64-D oracle",
            "",
            measured(results, "accuracy"),
            "",
            "Fréchet distance (mean and covariance) between n samples of x_{t'} | x_t and the exact",
            "conditional's closed-form moments, averaged over conditioning points, minus the same",
            "statistic for exact samples (its Monte-Carlo floor). Energy distance (sees the modes) in",
            f"brackets, floor noted. ![accuracy]({plot})",
            "",
        ]
        for name, r in results["accuracy"].items():
            budgets = sorted({x["nfe"] for rows in r["kernels"].values() for x in rows})
            lines += [
                f"### {name}: t = {r['t']:g} -> {r['t_next']:g}; {r['points']} points x {r['n']} samples; "
                f"Fréchet floor {r['frechet_floor']:.4f}, energy floor {r['energy_floor']:.4f}, "
                f"tr Cov = {r['trace_cov']:.2f}",
                "",
                "| kernel | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
                "|---|" + "---|" * len(budgets),
            ]
            for label, rows in r["kernels"].items():
                by = {x["nfe"]: x for x in rows}
                cells = [
                    f"{by[b]['frechet'] - r['frechet_floor']:.3g} ({by[b]['energy']:.3f})" if b in by else "—"
                    for b in budgets
                ]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines += [
                "",
                "NFE to reach a target error (Fréchet above the floor, as a fraction of tr Cov;",
                "log-log interpolation between budgets; — = not reached by 64):",
                "",
                "| kernel | " + " | ".join(f"{f:.1%}" for f in r["targets"]) + " |",
                "|---|" + "---|" * len(r["targets"]),
            ]
            for label, reach in r["nfe_to_target"].items():
                lines.append(
                    f"| {label} | " + " | ".join("—" if v is None else f"{v:.1f}" for v in reach) + " |"
                )
            ratios = r.get("sde_over_glass")
            if ratios:
                lines += [
                    "",
                    "SDE NFE / GLASS NFE at equal error (target 1/8 of SDE's NFE means a ratio >= 8): "
                    + "; ".join(f"{k}: {v}" for k, v in ratios.items())
                    + ".",
                ]
            lines.append("")
    if "mnist" in results:
        rows = results["mnist"]["rows"]
        lines += [
            "## MNIST posterior FID vs NFE (t = 0.2, 256 validation images, 1 sample each)",
            "",
            measured(results, "mnist"),
            "",
            "| kernel | NFE | FID |",
            "|---|---|---|",
        ]
        for r in sorted(rows, key=lambda r: (str(r.get("sampler")).rsplit(" M=", 1)[0], r["nfe"])):
            lines.append(f"| {r.get('sampler')} | {r['nfe']} | {r.get('fid', float('nan')):.1f} |")
        lines.append("")
    if "fk" in results:
        lines += [
            "## FK steering throughput and peak memory (K = 4 transitions x GLASS M = 2, one group)",
            "",
            measured(results, "fk"),
            "",
            "| model | particles | chunk | wall (s) | particle-steps / s | peak (MiB) | peak of |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["fk"]:
            lines.append(
                f"| {r['model']} | {r['particles']} | {r['chunk'] or 'all'} | {r['wall_s']:.3f} | "
                f"{r['particle_steps_per_s']:.0f} | {r['peak_mib']:.0f} | {r['peak_kind']} |"
            )
        lines += [
            "",
            "Each row runs in a fresh process; on the CPU the peak is the RSS high-water mark minus the",
            "RSS before the run (the oracle runs on the CPU). A particle-step is one particle through one",
            "inner step (one NFE).",
            "",
        ]
    if "batching" in results:
        bt = results["batching"]
        same = "identical" if bt["unet_identical"] and bt["features_identical"] else "NOT identical"
        lines += [
            "",
            "## Batch sizes on this CPU",
            "",
            f"{measured(results, 'default')} Medians of interleaved repetitions; outputs at every size "
            f"{same} bit for bit.",
            "",
            "| MNIST UNet, 256 images | " + " | ".join(bt["unet_ms_per_image"]) + " |",
            "|---|" + "---|" * len(bt["unet_ms_per_image"]),
            "| ms per image | " + " | ".join(f"{v:.2f}" for v in bt["unet_ms_per_image"].values()) + " |",
            "",
            "| classifier features, 2,000 images, batch | " + " | ".join(bt["features_us_per_image"]) + " |",
            "|---|" + "---|" * len(bt["features_us_per_image"]),
            "| us per image | " + " | ".join(f"{v:.0f}" for v in bt["features_us_per_image"].values()) + " |",
        ]
    if "train" in results:
        tr = results["train"]
        fp32, rows = tr["s_per_step"]["fp32"], tr["s_per_step"].items()
        lines += [
            "",
            f"## Training step (`glass train flow`, batch {tr['batch']}, {tr['threads']} threads)",
            "",
            f"{measured(results, 'train')} Medians of interleaved repetitions.",
            "",
            "| trainer.precision | s per step | images/s | vs fp32 |",
            "|---|---|---|---|",
            *(f"| {p} | {s:.3f} | {tr['batch'] / s:.0f} | {fp32 / s:.2f}x |" for p, s in rows),
        ]
    if "default_run_s" in results:
        whole = results.get("default_run_whole_batch_s")
        lines += [
            "",
            f"Default `glass run` (MNIST posterior comparison, cold FID cache), wall time: "
            f"{results['default_run_s']:.1f} s"
            + (f" (`model.chunk=null`, the whole batch per UNet call: {whole:.1f} s)." if whole else "."),
        ]
    lines += durations_table(results)
    text = re.sub(r"\n+## ", "\n\n## ", "\n".join(lines))  # one blank line before every section
    return text.rstrip("\n") + "\n"


def durations_table(results: dict) -> list[str]:
    """The last section of bench.md: how long each section's last run took, with the machine's load as
    that run started (a section run beside other work takes longer); "not timed" for one measured
    before times were recorded. The README quotes this table for ``make bench``'s time."""
    took = results.get("durations", {})
    ran = [s for s in SECTIONS if s in results.get("dates", {})]
    if not ran:
        return []
    rows = [
        f"| {s} | {results['dates'][s]} | "
        + (f"{took[s]['s'] / 60:.1f} min | {took[s]['load']} |" if s in took else "not timed | |")
        for s in ran
    ]
    timed = [took[s]["s"] for s in ran if s in took]
    total = f"In all {sum(timed) / 60:.0f} minutes" if timed else "No section timed yet"
    missing = [s for s in ran if s not in took]
    more = f", and more: {', '.join(missing)} not timed yet." if missing and timed else "."
    return [
        "",
        f"## How long each section took ({results['machine']['cpu_count']} CPU cores)",
        "",
        "| section | measured | took | load as its run started |",
        "|---|---|---|---|",
        *rows,
        "",
        total + more,
    ]


TARGETS = (0.02, 0.005)


def summarise_accuracy(r: dict) -> dict:
    tr, floor = r["trace_cov"], r["frechet_floor"]
    for rows in r["kernels"].values():
        for x in rows:
            x["excess"] = x["frechet"] - floor
    r["targets"] = list(TARGETS)
    r["nfe_to_target"] = {
        k: [accuracy.nfe_to_reach(rows, f * tr, "excess") for f in TARGETS]
        for k, rows in r["kernels"].items()
    }
    sde = r["nfe_to_target"].get("SDE (eq. 5)")
    ratios = {}
    for k, reach in r["nfe_to_target"].items():
        if k.startswith("GLASS") and sde:
            ratios[k] = ", ".join(
                "—" if a is None or b is None else f"{b / a:.1f}x" for a, b in zip(reach, sde)
            )
    r["sde_over_glass"] = ratios
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description="glass-flows benchmarks")
    ap.add_argument(
        "--out", default=None, help="default benchmarks/results; --quick: outputs/bench-quick"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions")
    ap.add_argument(
        "--only", default=None, help=f"comma list of {SECTIONS} (default: all; on a device {ON_DEVICE})"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd network")
    ap.add_argument(
        "--batches", default=None, help="MNIST overhead batch sizes, e.g. 1,64,256 (none: oracle rows only)"
    )
    ap.add_argument("--fk-point", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rewrite bench.md and accuracy.png from bench.json")  # fmt: skip
    args = ap.parse_args()
    if args.fk_point:
        name, p, c = args.fk_point.split(",")
        print(json.dumps(fk_point(name, int(p), int(c) or None, args.device)))
        return
    on_cpu = args.device == "cpu"
    only = [s for s in (args.only or ",".join(SECTIONS if on_cpu else ON_DEVICE)).split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        sys.exit(f"error: unknown section(s) {unknown}; choose from {SECTIONS}")
    elsewhere = sorted(set(only) - set(ON_DEVICE)) if not on_cpu else []
    if elsewhere:  # they would run on the CPU and be filed under the device's results
        sys.exit(f"error: section(s) {elsewhere} run on the CPU only; with --device {args.device} choose "
                 f"from {ON_DEVICE}")  # fmt: skip
    args.out = args.out or ("outputs/bench-quick" if args.quick else "benchmarks/results")
    reps = 3 if args.quick else 7
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench" if args.device == "cpu" else f"bench-{torch.device(args.device).type}"
    plot = accuracy_png(stem)
    results: dict = {}
    saved = out / f"{stem}.json"
    if (args.render or set(only) != set(SECTIONS)) and saved.is_file():  # update those sections only
        results = json.loads(saved.read_text())
    if args.render:  # no measurement: bench.md again from bench.json (after a change to the format)
        if not results:
            sys.exit(f"error: --render needs {saved}")
        (out / f"{stem}.md").write_text(markdown(results, plot))
        if results.get("accuracy"):
            accuracy_plot(results["accuracy"], out / plot)
        drew = f" and {out / plot}" if results.get("accuracy") else ""
        print(f"wrote {out / f'{stem}.md'}{drew} from {saved}")
        return
    glass.models.mnist.check_device(args.device)
    results["machine"] = machine(args.device)
    dates = results.setdefault("dates", {})
    took = results.setdefault("durations", {})
    # the load before the run: read after a section it would mostly be that section's own threads
    clock = {"start": time.perf_counter(), "load": round(os.getloadavg()[0], 1)}

    def done(section: str) -> None:  # the section ran to its end: date it, time it, and save
        dates[section] = results["machine"]["date"]
        took[section] = {"s": round(time.perf_counter() - clock["start"], 1), "load": clock["load"]}
        clock["start"] = time.perf_counter()
        (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
        (out / f"{stem}.md").write_text(markdown(results, plot))

    if "overhead" in only:
        keep_mnist = args.batches == "none"  # oracle rows only; the MNIST rows of the last run stay
        results["overhead"] = [
            r for r in results.get("overhead", []) if keep_mnist and r["model"].startswith("mnist")
        ]
        batches = (
            []
            if keep_mnist
            else [int(b) for b in args.batches.split(",")]
            if args.batches
            else ([1, 16] if args.quick else [1, 64, 256])
        )
        variants = [("float32", False)]
        if args.dtype != "float32":
            variants.append((args.dtype, False))
        if args.compile:
            variants.append((args.dtype, True))
        for dtype, comp in variants if batches else []:
            mnist = mnist_model(args.device, dtype, comp)
            for batch in batches:
                r = overhead(mnist, batch, 8, reps if batch < 256 or args.device != "cpu" else 3, args.device)
                results["overhead"].append(
                    {"model": "mnist UNet" + (" (compiled)" if comp else ""), "dtype": dtype, **r}
                )
                print(results["overhead"][-1], flush=True)
        oracle = random_mixture(dim=64, n_components=8, scale=1.0, std=0.3, seed=0)
        if args.device == "cpu":
            for batch in (256, 4096):
                results["overhead"].append(
                    {"model": "64-D oracle", "dtype": "float64", **overhead(oracle, batch, 8, reps)}
                )
                print(results["overhead"][-1], flush=True)
        else:
            results["sync_check"] = sync_check(mnist_model(args.device, "float32", False), 64, args.device)
            print(results["sync_check"], flush=True)
        if keep_mnist:  # the MNIST rows keep the date they were measured
            dates.setdefault("overhead_mnist", dates.get("overhead"))
        else:
            dates.pop("overhead_mnist", None)
        done("overhead")

    if "loop" in only:
        results["loop"] = []
        for batch in (1, 256, 4096):
            results["loop"].append(loop_overhead(batch, 3 if args.quick else 51, device=args.device))
            print(results["loop"][-1], flush=True)
        done("loop")
    if "fk" in only:
        results["fk"] = fk_sweep(args.quick, args.device)
        done("fk")
    if "default" in only and not args.quick:
        results["batching"] = batching(reps)
        print(results["batching"], flush=True)
        results["default_run_whole_batch_s"] = default_run("model.chunk=null")  # as before model.chunk
        results["default_run_s"] = default_run()
        done("default")
    if "train" in only:
        results["train"] = train_steps(5 if args.quick else 21, args.device)
        print(results["train"], flush=True)
        done("train")
    if "accuracy" in only:  # sections whose numbers are not timings last: other work may share the machine
        n = 1024 if args.quick else 4096
        budgets = (1, 2, 4, 8) if args.quick else (1, 2, 4, 8, 16, 32, 64)
        results["accuracy"] = {}
        for name, (t, tn) in {"posterior": (0.2, 1.0), "transition": (0.2, 0.6)}.items():
            r = accuracy.measure(t, tn, budgets=budgets, n=n, n_energy=min(n, 1000))
            results["accuracy"][name] = summarise_accuracy(r)
            print(name, json.dumps(r["nfe_to_target"]), flush=True)
        accuracy_plot(results["accuracy"], out / plot)
        done("accuracy")
    if "mnist" in only:
        results["mnist"] = mnist_fid(args.quick)
        done("mnist")
    print(markdown(results, plot))


if __name__ == "__main__":
    main()
