"""The one experiment entry point, above the runner and the sweeps: every ``glass run`` (one job or a
multirun), ``glass reproduce`` and ``glass train`` goes through here.

A call first composes and validates *every* job (constructor errors, data, model / metric / reward
mismatches, a writable output directory), so bad input writes nothing; then one job runs with
:func:`glass.runner.run_single` and several with :func:`glass.sweep.sweep` (resumable, on Hydra's
launchers).
"""

from __future__ import annotations

from pathlib import Path

from glass.config import RunFailed, UserError, compose, expand_sweep
from glass.runner import Job, Shared, build_job, check_not_running, check_out_dir, run_single

__all__ = ["prepare", "prepare_jobs", "run", "release", "train"]


def prepare_jobs(batches: list[list[str]], single: bool = False) -> list[Job]:
    """Compose and validate one job per override list (components shared between the jobs), and check
    the output directory first (it is made, empty, if need be; nothing else is created)."""
    from glass import distributed

    distributed.setup()  # under torchrun: join the process group, pick this rank's GPU (before loading)
    shared = Shared()
    configs = [compose(ov) for ov in batches]
    for out_dir in dict.fromkeys(cfg.out_dir for cfg in configs):  # before anything uses it (caches)
        check_out_dir(out_dir)
    if single:  # one run, not a sweep: a prompt set another process computes is refused before loading
        check_not_running(configs[0])
    jobs = [build_job(ov, cfg, shared) for ov, cfg in zip(batches, configs)]
    if distributed.world() > 1 and (len(jobs) > 1 or not jobs[0].task.prompts):
        raise UserError(
            "torchrun shards the prompt set of one run (task.prompts=FILE, no -m); for sweeps and "
            "reproduce use hydra/launcher=submitit_slurm, with task.prompt_range shards"
        )
    texts: dict[int, tuple] = {}  # every model encodes all its jobs' prompts at once, before any runs
    for job in jobs:
        texts.setdefault(id(job.model), (job.model, []))[1].extend(job.task.texts())
    for model, prompts in texts.values():
        model.prepare_prompts(prompts)
    return jobs


def prepare(overrides: list[str], multirun: bool = False) -> list[Job]:
    """The jobs of ``glass run [-m] overrides``: a multirun expands the sweep overrides first."""
    return prepare_jobs(expand_sweep(overrides) if multirun else [list(overrides)], single=not multirun)


def run(
    overrides: list[str] | list[Job],
    multirun: bool = False,
    progress=None,
    sweep_dir: Path | None = None,
    hydra_overrides: list[str] | None = None,
    announce=None,
) -> tuple[Path, list[dict]]:
    """Run the experiment(s) and return (output directory, one row per job and kernel).

    ``overrides`` may also be the jobs returned by :func:`prepare`. ``progress(description, total)``
    may return a callable that advances a progress bar. A sweep (``multirun`` or several jobs) is
    resumable; a failed sweep job raises RunFailed after the other jobs have run.
    """
    from glass import distributed

    jobs = overrides if overrides and isinstance(overrides[0], Job) else prepare(overrides, multirun)
    if multirun and distributed.world() > 1:
        raise UserError(
            "torchrun shards the prompt set of one run: drop -m (sweeps: hydra/launcher=submitit_slurm)"
        )
    try:
        if not multirun and len(jobs) == 1:
            return run_single(jobs[0], progress, announce)
        from glass.sweep import sweep

        base, rows, failures = sweep(jobs, sweep_dir, hydra_overrides, progress, announce=announce)
        if rows:  # summary.png / summary.md (and merged prompt-set shards), as glass report writes them
            from glass.report import report

            report(base)
    finally:
        release(jobs)
    if failures:
        name, message = failures[0]
        wrote = any((base / f"{n}.failed" / "error.txt").is_file() for n, _ in failures)  # none: refused
        see = f"see {base}/<job>.failed/error.txt; " if wrote else ""  # before they ran
        raise RunFailed(
            f"{len(failures)} of {len(jobs)} jobs failed, e.g. {name}: {message} "
            f"({see}run the same sweep again to retry them)"
        )
    return base, rows


def release(jobs: list[Job]) -> None:
    """Free what the jobs' metrics loaded for the run (e.g. metric=rewards' reward models)."""
    for metric in {id(j.metric): j.metric for j in jobs}.values():
        if callable(getattr(metric, "release", None)):
            metric.release()


def train(target: str, overrides: list[str]) -> dict:
    """``glass train TARGET overrides``: compose conf/train.yaml, check the data, train (resuming from
    ``<out_dir>/train/<target>``) and return the trainer's summary."""
    from glass.config import groups, instantiate
    from glass.data import load_mnist

    targets = groups("train").get("trainer", [])
    if "=" in target:  # `glass train prior=lowfreq ...`: the flow model is the default target
        target, overrides = "flow", [target, *overrides]
    if target not in targets:
        raise UserError(f"unknown training target {target!r}; choose from: {', '.join(targets)}")
    cfg = compose([f"trainer={target}", *overrides], config_name="train")
    trainer = instantiate(cfg.trainer, "trainer")
    from glass.checks import check_seed

    try:
        check_seed("seed", cfg.seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    if cfg.data.root is not None and not Path(str(cfg.data.root)).expanduser().is_dir():
        raise UserError(f"data.root: the data directory {str(cfg.data.root)!r} does not exist")
    load_mnist("train", cfg.data.root, cfg.data.download)  # fail on missing data before writing anything
    suffix = cfg.prior.suffix if target == "flow" and "prior" in cfg else ""
    from glass.runner import check_out_dir

    run_dir = check_out_dir(cfg.out_dir) / "train" / f"{target}{suffix}"
    from glass.claims import claim, claim_path

    # two copies would resume from one last.pt and overwrite it in turn (it could go back in steps)
    with claim(claim_path(run_dir.parent, run_dir.name)) as mine:
        if not mine:
            raise UserError(
                f"another glass train is training into {run_dir} now; wait for it (it resumes from there) "
                "or give this one another out_dir"
            )
        return trainer(run_dir, seed=int(cfg.seed), data_root=cfg.data.root, download=cfg.data.download)
