"""Resumable sweeps on Hydra's launchers.

``glass run -m a=1,2 b=x,y`` expands the overrides with Hydra's basic sweeper (one job per
combination), validates every job, and hands the jobs that are not finished yet to the launcher
chosen with ``hydra/launcher=basic|joblib|submitit_local|submitit_slurm`` (the last three come with
the ``launchers`` extra: ``pip install glass-flows[launchers]``). Layout::

    <out_dir>/multirun/<task>-<hash>/          one sweep (the name is a hash of its jobs' configs)
        sweep.json                             the jobs, their config hashes, W&B group, definition
        000-<config hash>/                     one finished job: config.yaml, job.json, metrics.json, ...
        001-<config hash>.partial/             a job that is running, or was killed
        002-<config hash>.failed/              a job that raised (error.txt)
        summary.csv  summary.jsonl             one row per job and kernel: swept parameters, metrics,
                                               NFE, wall time, seed

Re-running the same sweep finds the same directory and skips every job whose directory is finished
(matched by the hash of its resolved config, not by its position), and re-runs failed and
unfinished ones. ``metrics.json`` is written atomically and a job's directory is renamed from
``.partial`` only after everything in it is written, so a killed job never looks finished.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glass.config import UserError, config_dir, config_hash
from glass.files import write_json_atomic, write_rows
from glass.hydra_api import job_exception, make_launcher

__all__ = [
    "config_hash", "split_overrides", "check_sweep_dir", "sweep", "finished_jobs", "collect", "RunJob",
]  # fmt: skip

def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(job overrides, Hydra overrides such as ``hydra/launcher=joblib hydra.launcher.n_jobs=2``)."""
    job, hydra = [], []
    for o in overrides:
        (hydra if o.lstrip("+~").startswith(("hydra/", "hydra.")) else job).append(o)
    return job, hydra


def check_sweep_dir(sweep_dir: Path, what: str = "--sweep-dir") -> None:
    """A sweep directory must be new, empty or a sweep's (sweep.json or job directories), and it must
    be possible to create it: one line naming the problem, before anything is written."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise UserError(f"{what} {str(sweep_dir)!r} is a file, not a directory")
    if sweep_dir.is_dir():
        entries = list(sweep_dir.iterdir())
        jobs = any(p.is_dir() and (p / "job.json").is_file() for p in entries)  # sweep.json was lost
        if entries and not jobs and not (sweep_dir / "sweep.json").is_file():
            raise UserError(
                f"{what} {str(sweep_dir)!r} is not empty and is not a sweep directory (no sweep.json); "
                "give a new directory or an earlier sweep's"
            )
        return
    parent = sweep_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {str(sweep_dir)!r} cannot be created: {str(parent)!r} is a file")


@dataclass
class Planned:
    job: object  # runner.Job
    hash: str
    name: str
    done: Path | None
    labels: dict | None = None


def finished_jobs(sweep_dir: Path) -> dict[str, Path]:
    """Config hash -> directory of every finished job in ``sweep_dir``."""
    found = {}
    if not sweep_dir.is_dir():
        return found
    for d in sorted(sweep_dir.iterdir()):
        if not d.is_dir() or d.suffix in (".partial", ".failed"):
            continue
        try:
            meta = json.loads((d / "job.json").read_text())
            json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError):
            continue  # not a finished job (or a damaged one): it is run again
        if isinstance(meta, dict) and meta.get("config_hash"):  # single runs carry no hash
            found.setdefault(meta["config_hash"], d)
    return found


def default_sweep_dir(jobs: list) -> Path:
    key = hashlib.sha256(" ".join(sorted(config_hash(j.cfg) for j in jobs)).encode()).hexdigest()[:8]
    tasks = sorted({j.task.name for j in jobs})
    return Path(jobs[0].cfg.out_dir) / "multirun" / f"{'-'.join(tasks)}-{key}"


def plan(jobs: list, sweep_dir: Path, labels: list[dict] | None = None) -> list[Planned]:
    done = finished_jobs(sweep_dir)
    planned, seen = [], set()
    for i, job in enumerate(jobs):
        h = config_hash(job.cfg)
        if h in seen:
            raise UserError(f"job {i} repeats an earlier job of the sweep exactly: {' '.join(job.overrides)}")
        seen.add(h)
        name = done[h].name if h in done else f"{i:03d}-{h}"
        planned.append(Planned(job, h, name, done.get(h), (labels or [{}] * len(jobs))[i]))
    return planned


def _quote(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _launch_context(sweep_dir: Path, hydra_overrides: list[str], task_function):
    """Hydra's master config and launcher for this sweep (errors become one-line UserErrors)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    reserved = ("hydra.sweep.", "hydra.run.", "hydra.output_subdir", "hydra.job_logging")
    for o in hydra_overrides:
        if o.lstrip("+~").startswith(reserved):
            raise UserError(f"{o!r}: glass sets the sweep's directories itself; use --sweep-dir DIR")
    overrides = [
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        "hydra.output_subdir=null",
        f"hydra.sweep.dir={_quote(sweep_dir)}",
        *hydra_overrides,
    ]
    try:
        return make_launcher(overrides, task_function)
    except (HydraException, OmegaConfBaseException, ImportError, ValueError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ""
        if "launcher" in text or "launcher" in " ".join(hydra_overrides):
            hint = " (joblib and submitit launchers: pip install 'glass-flows[launchers]')"
        raise UserError(f"cannot set up the launcher: {text}{hint}") from None


def sweep(
    jobs: list,
    sweep_dir: Path | None = None,
    hydra_overrides: list[str] | None = None,
    progress=None,
    group: str | None = None,
    definition: dict | None = None,
    announce=None,
    labels: list[dict] | None = None,
) -> tuple[Path, list[dict], list[tuple[str, str]]]:
    """Run the jobs that ``sweep_dir`` does not hold finished yet; return (sweep dir, summary rows,
    failures as (job directory, one-line error)). ``announce(text)`` is told what is skipped;
    ``labels`` (one dict per job, e.g. the method's name) become columns of the summary."""
    from hydra import initialize_config_dir

    sweep_dir = Path(sweep_dir) if sweep_dir is not None else default_sweep_dir(jobs)
    planned = plan(jobs, sweep_dir, labels)
    todo = [p for p in planned if p.done is None]
    failures = []
    task = RunJob({p.hash: p.job for p in todo}, progress)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="glass"):
        launcher = _launch_context(sweep_dir, list(hydra_overrides or []), task)  # before anything is written
        check_sweep_dir(sweep_dir, "the sweep directory")
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reason = e.strerror or e
            raise UserError(f"cannot create the sweep directory {str(sweep_dir)!r}: {reason}") from None
        _write_sweep_json(sweep_dir, planned, group or sweep_dir.name, definition)
        if announce:
            skipped = len(planned) - len(todo)
            announce(
                f"sweep {sweep_dir}: {len(planned)} jobs"
                + (f", {skipped} already finished (skipped)" if skipped else "")
                + (f", running {len(todo)} with {type(launcher).__name__}" if todo else "")
            )
        if todo:
            subdir = "hydra.sweep.subdir="
            overrides = [[*p.job.overrides, subdir + _quote(p.name + ".partial")] for p in todo]
            returns = launcher.launch(overrides, initial_job_idx=0)
            for p, ret in zip(todo, returns):
                err = job_exception(ret)
                if err is not None:
                    if isinstance(err, KeyboardInterrupt):
                        raise err
                    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    failures.append((p.name, f"{type(err).__name__}: {text}"))
    rows = collect(sweep_dir, planned)
    return sweep_dir, rows, failures


def _write_sweep_json(sweep_dir: Path, planned: list[Planned], group: str, definition: dict | None) -> None:
    path = sweep_dir / "sweep.json"
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        if not isinstance(old, dict):  # damaged: rewritten from the planned jobs
            old = {}
    data = {
        "group": group,
        "created": old.get("created", datetime.now().isoformat(timespec="seconds")),
        "jobs": [
            {"name": p.name, "config_hash": p.hash, "overrides": p.job.overrides, "labels": p.labels or {}}
            for p in planned
        ],
    }
    if definition is not None or "definition" in old:
        data["definition"] = definition if definition is not None else old["definition"]
    write_json_atomic(path, data)


def _params(overrides: list[str]) -> dict:
    out = {}
    for o in overrides:
        if "=" not in o or o.startswith("~"):
            continue
        key, value = o.lstrip("+").split("=", 1)
        out[key] = value
    return out


def collect(sweep_dir: Path, planned: list[Planned] | None = None) -> list[dict]:
    """Summary rows (one per finished job and kernel) of the sweep's jobs, written to summary.csv and
    summary.jsonl atomically. Without ``planned``, the jobs listed in sweep.json (or every finished
    job directory) are collected."""
    sweep_dir = Path(sweep_dir)
    if planned is not None:
        wanted = [(p.hash, p.job.overrides, p.labels or {}) for p in planned]
    else:
        try:
            meta = json.loads((sweep_dir / "sweep.json").read_text())
            wanted = [(j["config_hash"], j["overrides"], j.get("labels", {})) for j in meta["jobs"]]
        except (OSError, ValueError, KeyError, TypeError):  # no sweep.json, or a damaged one
            wanted = None
    done = finished_jobs(sweep_dir)
    if wanted is None:
        wanted = []
        for h, d in done.items():
            wanted.append((h, json.loads((d / "job.json").read_text()).get("overrides", []), {}))
    rows = []
    for h, overrides, labels in wanted:
        d = done.get(h)
        if d is None:
            continue
        metrics = json.loads((d / "metrics.json").read_text())
        params = _params(overrides)
        for r in metrics["rows"]:
            cols = {(f"{k}_cfg" if k in r else k): v for k, v in params.items()}
            rows.append(
                {"job": d.name, **labels, **cols, "overrides": " ".join(overrides), **r,
                 "seed": metrics.get("seed"), "wall_time_s": metrics.get("wall_time_s")}
            )  # fmt: skip
    if rows:
        write_rows(sweep_dir, rows)
    return rows


class RunJob:
    """The launcher's task function: run one job into ``hydra.sweep.dir/<name>.partial`` and rename it
    to ``<name>`` when everything is written. It carries the jobs this process has already prepared
    (and validated) and the progress callback; pickled for another process (joblib, submitit) it
    carries neither, and the job is built there from its config."""

    def __init__(self, prepared: dict | None = None, progress=None):
        self.prepared, self.progress = prepared or {}, progress

    def __getstate__(self) -> dict:
        return {"prepared": {}, "progress": None}

    def __setstate__(self, state: dict) -> None:
        self.prepared, self.progress = state["prepared"], state["progress"]

    def __call__(self, cfg) -> list[dict]:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from glass.runner import build_job, run_job

        hc = HydraConfig.get()
        partial = Path(hc.runtime.output_dir)
        run_dir = partial.with_name(partial.name.removesuffix(".partial"))
        group = None
        try:
            group = json.loads((run_dir.parent / "sweep.json").read_text()).get("group")
        except (OSError, ValueError):
            pass
        OmegaConf.set_readonly(cfg, True)
        key = config_hash(cfg)
        job = self.prepared.get(key)
        if job is None:  # launched in another process: build (and validate) the job here
            job = build_job(list(hc.overrides.task), cfg)
        failed = run_dir.with_name(run_dir.name + ".failed")
        rows = run_job(job, run_dir, self.progress, group=group, meta={"config_hash": key})
        if failed.is_dir():  # an earlier attempt failed; this one succeeded
            shutil.rmtree(failed, ignore_errors=True)
        return rows
