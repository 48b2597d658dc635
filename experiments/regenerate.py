"""``make results``: regenerate every committed result file, then the README's generated tables.

1. ``glass reproduce NAME --scale small`` for every definition, into ``outputs/results/<commit>/`` (a
   directory per commit: resumable within a commit, never mixing results of two code versions), and
   its ``NAME.md``, ``NAME*.png`` and ``summary.csv`` copied to ``experiments/results/reproduce/NAME/``;
2. the measurement scripts (``posterior_nfe.py``, ``mnist_measure.py``, ``table1_fks.py``, ``fid_sanity.py``,
   ``ot_assignment.py``, ``stochastic_sampling.py``, ``fk_bias.py``, ``inverse_gallery.py``,
   ``flow_quality.py``), which write ``experiments/results/`` themselves, and ``default_run``
   (``glass run``'s ``samples.png``, the README's first figure);
3. with a GPU, the definitions' ``large`` scale (the strongest checkpoint at sizes that decide the
   paper's rankings; ``NAME:large``, estimated at minutes on one H200 in all, not yet measured), copied to
   ``experiments/results/reproduce/NAME/large/``; without one they are skipped (``--only NAME:large``
   runs one on the CPU: hours);
4. ``python -m experiments.readme_results`` (README tables from the files).

``--only NAME,...`` runs some of them (definition names, ``NAME:large`` or script names). How long it
takes is measured, not typed: each script's (and ``default_run``'s) run is timed and recorded in
``experiments/results/make_results_time.json`` (seconds, date, commit, cores, the machine's load as it
started: :func:`record_time`), each reproduction's time is the sum of its jobs' wall times in its
summary.csv, and the README's total is generated from both (``experiments.readme_results``).
``--reports`` runs nothing: it redraws every committed ``NAME.md`` and ``NAME*.png`` from the
committed ``summary.csv`` beside it (after a change to the report's formatting or to a definition's
report block; a test fails when a committed report and its summary disagree), then the README tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
V1 = "glass/assets/mnist_flow_v1.safetensors"  # the first checkpoint: its own quality numbers only
# the next checkpoints (not yet the default): their quality only
V3, V4 = "glass/assets/mnist_flow_v3.safetensors", "glass/assets/mnist_flow_v4.safetensors"
SCRIPTS = {
    "posterior_nfe": ["experiments/posterior_nfe.py"],
    "mnist_posterior": ["experiments/mnist_measure.py", "posterior"],
    "mnist_value": ["experiments/mnist_measure.py", "value"],
    "table1_mnist": ["experiments/table1_fks.py", "--model", "mnist"],
    "table1_gmm": ["experiments/table1_fks.py", "--model", "gmm", "--steps", "4", "--groups", "1000"],
    "table1_gmm64": ["experiments/table1_fks.py", "--model", "gmm64", "--steps", "4", "--groups", "128"],
    "ot_assignment": ["experiments/ot_assignment.py"],
    "fid_sanity": ["experiments/fid_sanity.py"],
    "stochastic_sampling": ["experiments/stochastic_sampling.py"],
    "fk_bias": ["experiments/fk_bias.py"],
    "inverse_gallery": ["experiments/inverse_gallery.py"],
    "sd_grid_error": ["experiments/sd_grid_error.py"],
    "flow_quality": ["experiments/flow_quality.py", "--n", "10000", "--features", "mnist"],
    "flow_quality_2k": ["experiments/flow_quality.py", "--n", "2000", "--name", "mnist_flow_quality_2k"],
    "flow_quality_v1": ["experiments/flow_quality.py", "--checkpoint", V1, "--n", "2000",
                        "--name", "mnist_flow_v1_quality"],
    "flow_quality_v3": ["experiments/flow_quality.py", "--checkpoint", V3, "--n", "10000",
                        "--features", "mnist", "--name", "mnist_flow_v3_quality"],
    "flow_quality_v4": ["experiments/flow_quality.py", "--checkpoint", V4, "--n", "10000",
                        "--name", "mnist_flow_v4_quality"],
    "flow_quality_v4_heun": ["experiments/flow_quality.py", "--checkpoint", V4, "--n", "10000", "--features",
                             "mnist", "--method", "heun", "--name", "mnist_flow_v4_heun_quality"],
}

# what each script writes in experiments/results/ (file stems; a test checks that every committed file
# there is one of these, so no committed result is left out of ``make results``)
WRITES = {
    "posterior_nfe": ["posterior_nfe_gmm64_t0.2"], "mnist_posterior": ["mnist_posterior_fid"],
    "mnist_value": ["mnist_value_correlation"], "table1_mnist": ["table1_fks_mnist"],
    "table1_gmm": ["table1_fks_gmm"], "table1_gmm64": ["table1_fks_gmm64"],
    "ot_assignment": ["ot_assignment"], "stochastic_sampling": ["stochastic_sampling"],
    "fk_bias": ["fk_bias"], "fid_sanity": ["fid_sanity"],
    "inverse_gallery": ["inverse_mnist_samples"], "sd_grid_error": ["sd_grid_error"],
    "flow_quality": ["mnist_flow_quality"], "flow_quality_2k": ["mnist_flow_quality_2k"],
    "flow_quality_v1": ["mnist_flow_v1_quality"], "flow_quality_v3": ["mnist_flow_v3_quality"],
    "flow_quality_v4": ["mnist_flow_v4_quality"], "flow_quality_v4_heun": ["mnist_flow_v4_heun_quality"],
    "default_run": ["default_run"],
}  # fmt: skip
TIMES = ROOT / "experiments" / "results" / "make_results_time.json"  # written by this script itself
# written by the training runs that made the shipped checkpoints (their loss curves and records; the
# README's training commands rerun them, hours on a CPU): the checkpoint is the result, not rerun here
TRAINING = ["mnist_flow_loss", "mnist_flow_v1_loss", "mnist_flow_v3_loss", "mnist_flow_v4_loss",
            "mnist_flow_v4_training"]  # fmt: skip


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "local"


def reproduce(name: str, out_dir: Path, scale: str = "small") -> None:
    """``glass reproduce NAME --scale SCALE`` (large: on the GPU when there is one), its report and
    summary copied to ``experiments/results/reproduce/NAME/`` (the large scale to ``NAME/large/``)."""
    from glass.reproduce import variant_name

    extra = ["model.device=cuda"] if scale == "large" and gpu() else []
    cmd = ["glass", "reproduce", name, "--scale", scale, *extra, f"out_dir={out_dir}"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    source = out_dir / "reproduce" / name / variant_name(scale, extra)
    target = ROOT / "experiments" / "results" / "reproduce" / name / ("" if scale == "small" else scale)
    target.mkdir(parents=True, exist_ok=True)
    for f in [*source.glob(f"{name}*.md"), *source.glob(f"{name}*.png"), source / "summary.csv"]:
        shutil.copy2(f, target / f.name)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children so far."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def record_time(
    name: str, seconds: float, load: float, path: Path | None = None, ran_at: str | None = None,
    cpu_s: float | None = None,
) -> None:
    """Record how long step ``name`` (a script or ``default_run``) took in ``path``, beside the other
    steps' last timings, with the commit it ran at (``ran_at``, taken as it started: commits made while
    it ran are not its code; default: HEAD now) and the CPU time it used (``cpu_s``: over its wall time,
    the cores it kept busy; fewer than it asked for when other work shared the machine): under an
    exclusive lock (two ``--only`` runs at once both keep theirs), written atomically
    (``glass.files.write_text_atomic``). A record that cannot be read is refused, not overwritten."""
    import fcntl

    from glass.files import write_text_atomic

    path = TIMES if path is None else path
    where = ROOT / "outputs" / "results" if path == TIMES else path.parent  # git-ignored: not committed
    lock = where / f".{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        steps = read_times(path)
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        steps[name] = {"seconds": round(seconds, 1), "date": date, "commit": ran_at or commit(),
                       "cores": os.cpu_count(), "load": round(load, 1), "gpu": gpu()}  # fmt: skip
        if cpu_s is not None:
            steps[name]["cpu_s"] = round(cpu_s, 1)
        write_text_atomic(path, json.dumps({"steps": dict(sorted(steps.items()))}, indent=1) + "\n")


def read_times(path: Path | None = None) -> dict:
    """The recorded step timings (``path`` default: :data:`TIMES`; {} where there is no record yet); a
    damaged record is one clear error."""
    path = TIMES if path is None else path
    if not path.is_file():
        return {}
    try:
        steps = json.loads(path.read_text())["steps"]
        if not all(isinstance(v.get("seconds"), (int, float)) for v in steps.values()):
            raise ValueError("not a mapping of steps to timings")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"error: {path} cannot be read ({e}); restore it from git or delete it") from None
    return steps


def gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def committed_reports() -> list[tuple[Path, str, str]]:
    """(directory, definition, scale) of every committed reproduce result (``NAME/`` and ``NAME/SCALE/``)."""
    base = ROOT / "experiments" / "results" / "reproduce"
    out = []
    for csv_file in sorted(base.glob("*/summary.csv")) + sorted(base.glob("*/*/summary.csv")):
        rel = csv_file.parent.relative_to(base).parts
        out.append((csv_file.parent, rel[0], rel[1] if len(rel) > 1 else "small"))
    return out


def redraw_reports() -> None:
    from glass.report import report_from_summary

    for directory, name, scale in committed_reports():
        written = report_from_summary(directory, name, scale)
        print(f"{directory.relative_to(ROOT)}: {', '.join(f.name for f in written)}")


def default_run(out_dir: Path) -> None:
    """The README's default-run figure: ``glass run`` (the default experiment), its ``samples.png``."""
    runs = out_dir / "default_run"
    subprocess.run(["glass", "run", f"out_dir={runs}"], cwd=ROOT, check=True)
    latest = max(runs.glob("runs/*/*/samples.png"), key=lambda p: p.stat().st_mtime)
    shutil.copy2(latest, ROOT / "experiments" / "results" / "default_run.png")


def main(argv=None) -> int:
    from glass.definitions import names

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated definition or script names (NAME:large "
                    "for a definition's large scale)")
    ap.add_argument("--reports", action="store_true", help="run nothing: redraw the committed reports "
                    "from their committed summary.csv, then the README tables")
    args = ap.parse_args(argv)
    if args.reports:
        from experiments.readme_results import main as readme

        redraw_reports()
        return readme([])
    large = [f"{n}:large" for n in names("large")]
    every = [*names(), *SCRIPTS, "default_run", *large]
    if args.only is None and not gpu():  # hours each on a CPU: only where asked for by name
        print(f"no GPU: skipping the large scales ({', '.join(large)}); --only NAME:large runs one on "
              "the CPU", file=sys.stderr)
        every = [n for n in every if n not in large]
    only = every if args.only is None else args.only.split(",")
    unknown = [n for n in only if n not in every]
    if unknown:
        print(f"error: unknown result {unknown[0]!r}; choose from: {', '.join(every)}", file=sys.stderr)
        return 2
    if any(name in WRITES for name in only):
        read_times()  # a damaged timing record: said now, not after hours of work
    out_dir = ROOT / "outputs" / "results" / commit()
    for name in only:
        if name.endswith(":large"):
            reproduce(name.removesuffix(":large"), out_dir, "large")
        elif name not in WRITES:
            reproduce(name, out_dir)  # its time: its jobs' wall times, in its summary.csv
        else:
            start, load, head, cpu = time.perf_counter(), os.getloadavg()[0], commit(), cpu_seconds()
            if name in SCRIPTS:
                subprocess.run([sys.executable, *SCRIPTS[name]], cwd=ROOT, check=True)
            else:
                default_run(out_dir)
            record_time(name, time.perf_counter() - start, load, ran_at=head, cpu_s=cpu_seconds() - cpu)
    from experiments.readme_results import main as readme

    return readme([])


if __name__ == "__main__":
    sys.exit(main())
