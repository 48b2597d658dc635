"""Resumable sweeps on Hydra's launchers.

``glass run -m a=1,2 b=x,y`` expands the overrides with Hydra's basic sweeper (one job per
combination), validates every job, and hands the jobs that are not finished yet to the launcher
chosen with ``hydra/launcher=basic|joblib|submitit_local|submitit_slurm`` (the last three come with
the ``launchers`` extra: ``pip install glass-flows[launchers]``). Layout::

    <out_dir>/multirun/<task>-<hash>/          one sweep (the name is a hash of its jobs' configs)
        sweep.json                             the jobs, their config hashes, W&B group, definition
        000-<config hash>/                     one finished job: config.yaml, job.json, metrics.json, ...
        001-<config hash>.partial/             a job that is running, or was killed (SIGKILL)
        002-<config hash>.failed/              a job that raised or was interrupted (error.txt)
        003-<config hash>.stale/               a finished job's results under a checkpoint since retrained
        summary.csv  summary.jsonl             one row per job and kernel: swept parameters, metrics,
                                               NFE, wall time, seed

Re-running the same sweep finds the same directory and skips every job whose directory is finished
(matched by the hash of its resolved config, not by its position), and re-runs failed and
unfinished ones under the names they had (a killed prompt-set job resumes its records).
``metrics.json`` is written atomically and a job's directory is renamed from ``.partial`` only after
everything in it is written, so a killed job never looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from glass.claims import claim_path
from glass.config import RunFailed, UserError, config_dir, config_hash
from glass.files import set_aside, write_json_atomic, write_rows
from glass.hydra_api import job_exception, launcher_names, launcher_problem, literal, make_launcher
from glass.weights import stale_weights, weights_digest

__all__ = [
    "config_hash", "split_overrides", "check_sweep_dir", "sweep", "finished_jobs", "damaged_jobs",
    "check_record", "collect", "RunJob",
]  # fmt: skip

def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(job overrides, Hydra overrides such as ``hydra/launcher=joblib hydra.launcher.n_jobs=2``)."""
    job, hydra = [], []
    for o in overrides:
        (hydra if o.lstrip("+~").startswith(("hydra/", "hydra.")) else job).append(o)
    return job, hydra


# What a copy of the same sweep may have put in a directory that has no sweep.json yet: the temporary
# file of sweep.json's atomic write, a writability probe, the job claims (a copy started a moment earlier).
_TRANSIENT = re.compile(r"\.(sweep\.json\.\d+\.tmp|write-test-[0-9a-f]+|claims)\Z")


def check_sweep_dir(sweep_dir: Path, what: str = "--sweep-dir") -> None:
    """A sweep directory must be new, empty or a sweep's (sweep.json or job directories), and it must
    be possible to create it: one line naming the problem, before anything is written."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise UserError(f"{what} {str(sweep_dir)!r} is a file, not a directory")
    if sweep_dir.is_dir():
        record = sweep_dir / "sweep.json"
        if (record.exists() or record.is_symlink()) and not record.is_file():
            raise UserError(f"{str(record)!r} is not a file (a sweep's record); move it away and run again")
        entries = [p for p in sweep_dir.iterdir() if not _TRANSIENT.match(p.name)]
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


def check_record(d: Path) -> str | None:
    """Why the job directory ``d`` does not hold a finished job's record (None when it does): job.json
    an object with the job's config hash, metrics.json an object with a seed, a wall time and at least
    one row per kernel (an object naming its sampler). Anything else is run again."""
    try:
        meta = json.loads((d / "job.json").read_text())
        metrics = json.loads((d / "metrics.json").read_text())
    except FileNotFoundError as e:
        return f"no {Path(e.filename).name}"
    except (OSError, ValueError) as e:
        return f"unreadable record ({type(e).__name__})"
    if not isinstance(meta, dict) or not isinstance(meta.get("config_hash"), str):
        return "job.json has no config hash"
    if not isinstance(metrics, dict):
        return "metrics.json is not an object"
    rows = metrics.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "sampler" in r
                                                         for r in rows):  # fmt: skip
        return "metrics.json has no rows"
    if not isinstance(metrics.get("seed"), int) or not isinstance(metrics.get("wall_time_s"), (int, float)):
        return "metrics.json has no seed or wall time"
    return None


# a job's directory: NNN-<config hash>, while it runs .partial, after a failure .failed
JOB_NAME = re.compile(r"^(?P<name>\d{3,}-(?P<hash>[0-9a-f]{12}))(?P<state>\.partial|\.failed)?$")


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Directories that are (or were meant to be) finished jobs, by their name: not .partial / .failed,
    nor anything else a sweep directory holds (``merged/`` prompt-set shards)."""
    if not sweep_dir.is_dir():
        return []
    return [d for d in sorted(sweep_dir.iterdir()) if d.is_dir() and (m := JOB_NAME.match(d.name))
            and not m["state"]]  # fmt: skip


def _earlier_names(sweep_dir: Path) -> dict[str, str]:
    """Config hash -> job name of every job directory in ``sweep_dir`` (finished, damaged, killed or
    failed), so that a job planned at another position (values reordered, a sweep extended with
    --sweep-dir) goes on under its earlier name: its damaged record is reported and run again, and a
    prompt-set job resumes its records."""
    if not sweep_dir.is_dir():
        return {}
    found: dict[str, tuple[tuple[bool, bool], str]] = {}
    for d in sorted(sweep_dir.iterdir()):
        if d.is_dir() and (m := JOB_NAME.match(d.name)):
            # several directories of one job: the one with prompt-set records, else a record, else the first
            rank = ((d / "prompts").is_dir(), (d / "job.json").is_file())
            if m["hash"] not in found or rank > found[m["hash"]][0]:
                found[m["hash"]] = (rank, m["name"])
    return {h: name for h, (_, name) in found.items()}


def finished_jobs(sweep_dir: Path) -> dict[str, Path]:
    """Config hash -> directory of every finished job in ``sweep_dir`` (a record that validates, see
    :func:`check_record`)."""
    found = {}
    for d in _job_dirs(Path(sweep_dir)):
        if check_record(d) is None:
            found.setdefault(json.loads((d / "job.json").read_text())["config_hash"], d)
    return found


def damaged_jobs(sweep_dir: Path) -> dict[str, str]:
    """Name -> reason of every job directory whose record does not validate (run again)."""
    return {d.name: why for d in _job_dirs(Path(sweep_dir)) if (why := check_record(d)) is not None}


def default_sweep_dir(jobs: list) -> Path:
    key = hashlib.sha256(" ".join(sorted(config_hash(j.cfg) for j in jobs)).encode()).hexdigest()[:8]
    tasks = sorted({j.task.name for j in jobs})
    return Path(jobs[0].cfg.out_dir) / "multirun" / f"{'-'.join(tasks)}-{key}"


def plan(
    jobs: list, done: dict[str, Path], labels: list[dict] | None = None, earlier: dict[str, str] | None = None
) -> list[Planned]:
    """The sweep's jobs with their names (a finished job keeps its directory's, any other job the name
    it had in ``earlier``, :func:`_earlier_names`) and, from ``done`` (:func:`finished_jobs`), the
    finished ones."""
    earlier = earlier or {}
    planned, seen = [], set()
    for i, job in enumerate(jobs):
        h = config_hash(job.cfg)
        if h in seen:
            raise UserError(f"job {i} repeats an earlier job of the sweep exactly: {' '.join(job.overrides)}")
        seen.add(h)
        name = done[h].name if h in done else earlier.get(h, f"{i:03d}-{h}")
        planned.append(Planned(job, h, name, done.get(h), (labels or [{}] * len(jobs))[i]))
    return planned


CLAIMED = "claimed by another process"  # what RunJob returns for a job another copy of the sweep runs


def _launch_context(sweep_dir: Path, hydra_overrides: list[str], task_function):
    """Hydra's master config and launcher for this sweep (errors become one-line UserErrors)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    reserved = ("hydra.sweep.", "hydra.run.", "hydra.output_subdir", "hydra.job_logging", "hydra.job.chdir")
    for o in hydra_overrides:
        if o.lstrip("+~").startswith(reserved):
            raise UserError(
                f"{o!r}: glass sets the sweep's directories, and keeps its jobs in the working directory, "
                "itself; use --sweep-dir DIR"
            )
    overrides = [
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        "hydra.output_subdir=null",
        f"hydra.sweep.dir={literal(str(sweep_dir))}",
        *hydra_overrides,
    ]
    try:
        launcher = make_launcher(overrides, task_function)
    except (HydraException, OmegaConfBaseException, ImportError, ValueError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        merging = re.match(r"Error merging override (hydra\.launcher\.[\w.]+)=(.*)$", text)
        if merging:  # a launcher option of the wrong type (e.g. n_jobs=abc)
            key, value = merging.groups()
            cause = e.__cause__ or e.__context__
            why = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
            why = why or "wrong type"
            raise UserError(f"{key}={value!r} is not a value this launcher takes ({why})") from None
        hint = ""
        if isinstance(e, ImportError) or "Could not find 'hydra/launcher" in text:
            names = launcher_names()
            parts = [f"installed: {', '.join(names)}"] if names else []
            if "joblib" not in names:
                parts.append("joblib and submitit: pip install 'glass-flows[launchers]'")
            hint = f" ({'; '.join(parts)})"
        raise UserError(f"cannot set up the launcher: {text}{hint}") from None
    problem = launcher_problem(launcher)
    if problem:
        raise UserError(problem)
    return launcher


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
    done = finished_jobs(sweep_dir)
    planned = plan(jobs, done, labels, _earlier_names(sweep_dir))
    retrained = {}
    for p in planned:  # finished with a checkpoint since retrained in place: computed again
        if p.done is not None and (changed := stale_weights(p.done, weights_digest(p.job.cfg))):
            retrained[p.name] = [c[4:] if c.startswith("hub:") else Path(c).name for c in changed]
            p.done = None
    todo = [p for p in planned if p.done is None]
    failures = []
    task = RunJob(sweep_dir, {p.hash: p.name for p in todo}, {p.hash: p.job for p in todo}, progress)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="glass"):
        launcher = _launch_context(sweep_dir, list(hydra_overrides or []), task)  # before anything is written
        check_sweep_dir(sweep_dir, "the sweep directory")
        new = not sweep_dir.exists()
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reason = e.strerror or e
            raise UserError(f"cannot create the sweep directory {str(sweep_dir)!r}: {reason}") from None
        _write_sweep_json(sweep_dir, planned, group or sweep_dir.name, definition)
        for name in retrained:  # a summary or report never mixes them in, even if a rerun fails
            set_aside(sweep_dir / name)
        if announce:
            _announce_plan(announce, sweep_dir, planned, todo, len(set(done) - {p.hash for p in planned}),
                           retrained, type(launcher).__name__)  # fmt: skip
        if todo:
            try:
                failures = _launch(launcher, todo, sweep_dir, new, announce)
            except KeyboardInterrupt:  # Ctrl-C: the summary still lists every job finished before it
                with contextlib.suppress(Exception):
                    collect(sweep_dir, planned)
                raise
    rows = collect(sweep_dir, planned)
    return sweep_dir, rows, failures


def _announce_plan(announce, sweep_dir: Path, planned: list, todo: list, others: int, retrained: dict,
                   launcher: str) -> None:
    """What the sweep will do: jobs run again (damaged, or computed under a checkpoint since
    retrained), finished jobs that are not in this sweep, and how many are skipped."""
    names = {p.name for p in todo}
    for name, why in damaged_jobs(sweep_dir).items():
        if name in names:
            announce(f"{name}: damaged record ({why}), run again")
    for name, changed in retrained.items():
        announce(f"{name}: computed with other weights of {', '.join(changed)} (retrained or updated "
                 f"since), run again (the old results are in {name}.stale)")  # fmt: skip
    if others:  # a narrower sweep into a directory that holds more: nothing is lost, but say so
        announce(f"{others} finished jobs in {sweep_dir} are not in this sweep: kept on disk, left "
                 "out of its summary and report")  # fmt: skip
    skipped = len(planned) - len(todo)
    announce(
        f"sweep {sweep_dir}: {len(planned)} jobs"
        + (f", {skipped} already finished (skipped)" if skipped else "")
        + (f", running {len(todo)} with {launcher}" if todo else "")
    )


def _launch(launcher, todo: list[Planned], sweep_dir: Path, new: bool, announce) -> list[tuple[str, str]]:
    """Hand the unfinished jobs to the launcher; (job name, one-line error) of each job that failed.
    A failure of the launcher itself (no job ran) removes a sweep directory this call made."""
    subdir = "hydra.sweep.subdir="
    overrides = [[*p.job.overrides, subdir + literal(p.name + ".partial")] for p in todo]
    try:
        with reaper(launcher):
            returns = launcher.launch(overrides, initial_job_idx=0)
    except Exception as e:  # the launcher itself failed (not a job): no job ran
        if new and not any(p.name != "sweep.json" for p in sweep_dir.iterdir()):
            shutil.rmtree(sweep_dir, ignore_errors=True)  # nothing of this call is left behind
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RunFailed(f"the launcher failed: {type(e).__name__}: {text}") from None
    failures, elsewhere = [], 0
    for p, ret in zip(todo, returns):
        err = job_exception(ret)
        if err is not None:
            if isinstance(err, KeyboardInterrupt):
                raise err
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            failures.append((p.name, f"{type(err).__name__}: {text}"))
        elif ret.return_value == CLAIMED:
            elsewhere += 1
    if elsewhere and announce:
        announce(
            f"{elsewhere} jobs were running in another copy of this sweep and are left to it; run "
            "the same command when it has finished for the complete summary"
        )
    return failures


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
    summary.jsonl atomically (removed, with a generic report's summary.md and plots, when none of
    ``planned`` has finished, so that a summary left by another sweep into the same directory is not
    read as this one's). Without ``planned``, the jobs listed in sweep.json (or every finished job
    directory) are collected."""
    sweep_dir = Path(sweep_dir)
    if planned is not None:
        wanted = [(p.hash, p.job.overrides, p.labels or {}) for p in planned]
    else:
        try:
            meta = json.loads((sweep_dir / "sweep.json").read_text())
            wanted = [(j["config_hash"], [str(o) for o in j["overrides"]], dict(j.get("labels") or {}))
                      for j in meta["jobs"]]  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no sweep.json, or a damaged one
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
    elif planned is not None:  # none of the sweep's jobs finished: a summary left here describes others
        for old in [*sweep_dir.glob("summary.*"), *sweep_dir.glob("summary-*.png")]:
            old.unlink(missing_ok=True)
    return rows


class RunJob:
    """The launcher's task function: run one job into ``<sweep dir>/<name>.partial`` and rename it to
    ``<name>`` when everything is written, once it holds the job's claim (see glass.claims). It carries
    the sweep directory and the jobs' names by config hash (never read back from Hydra's config, which
    would interpolate a literal ``${...}`` in the path), the jobs this process has already prepared
    (and validated) and the progress callback; pickled for another process (joblib, submitit) it
    carries neither of the last two, and the job is built there from its config."""

    def __init__(self, sweep_dir: Path, names: dict[str, str], prepared: dict | None = None, progress=None):
        self.sweep_dir, self.names, self.origin = str(sweep_dir), dict(names), os.getpid()
        self.prepared, self.progress = prepared or {}, progress

    def __getstate__(self) -> dict:
        return {"sweep_dir": self.sweep_dir, "names": self.names, "origin": self.origin}

    def __setstate__(self, state: dict) -> None:
        self.sweep_dir, self.names, self.origin = state["sweep_dir"], state["names"], state["origin"]
        self.prepared, self.progress = {}, None

    def _progress_of(self, key: str):
        """The progress callback with the job's place among the jobs this call runs before each
        description: ``[12/80] generate: 5/5`` (an hour-long sweep says how far it is; a resumed one
        counts the jobs left)."""
        if self.progress is None:
            return None
        place = f"[{list(self.names).index(key) + 1}/{len(self.names)}]"
        return lambda description, total: self.progress(f"{place} {description}", total)

    def __call__(self, cfg) -> list[dict] | str:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from glass.claims import claim
        from glass.runner import build_job, run_job

        die_with_parent(self.origin)
        hc = HydraConfig.get()
        OmegaConf.set_readonly(cfg, True)
        key = config_hash(cfg)
        if key not in self.names:  # the launcher composed it from the files as they are now
            _remove_if_empty(Path(hc.runtime.output_dir))  # the launcher's <name>.partial: nothing ran
            raise RunFailed(
                f"the job's config changed since the sweep was planned (hash {key}; a file under conf/ "
                "edited while it ran?): run the same command again to plan with the files as they are"
            )
        sweep_dir = Path(self.sweep_dir)
        run_dir = sweep_dir / self.names[key]
        partial = run_dir.with_name(run_dir.name + ".partial")
        with claim(claim_path(sweep_dir, key)) as mine:
            if not mine:  # another copy of the sweep runs this job now
                _leave(partial, sweep_dir, key)
                return CLAIMED
            digest = weights_digest(cfg)
            done = finished_jobs(sweep_dir)
            if key in done and not stale_weights(done[key], digest):  # finished by another copy since
                _remove_if_empty(partial)  # this one planned
                return _rows(done[key])
            group = None
            try:
                meta = json.loads((sweep_dir / "sweep.json").read_text())
                group = meta.get("group") if isinstance(meta, dict) else None
            except (OSError, ValueError):
                pass
            job = self.prepared.get(key)
            if job is None:  # launched in another process: build (and validate) the job here, and
                job = build_job(list(hc.overrides.task), cfg)  # key it by the weights the build
                digest = weights_digest(cfg)  # fetched (a hub pipeline not downloaded before has none)
            failed = run_dir.with_name(run_dir.name + ".failed")
            meta = {"config_hash": key, "weights": digest}
            rows = run_job(job, run_dir, self._progress_of(key), group=group, meta=meta)
            if failed.is_dir():  # an earlier attempt failed; this one succeeded
                shutil.rmtree(failed, ignore_errors=True)
            return rows


_WATCHED: set[int] = set()

# A process of its own (no glass import) that outlives a SIGKILL of the sweep's process. Every process
# the launcher starts inherits GLASS_SWEEP_OWNER=<token> from the sweep's process. A sweep that ends
# writes one byte to the reaper's pipe; a pipe that closes without it means the sweep's process died:
# the reaper waits until it is reparented (a dying process closes its files before its children are
# reparented: deciding at once could see the dying parent and kill nothing), then kills every process
# whose environment carries the token (idle joblib workers that never ran a job have no watchdog thread).
_REAPER = r"""
import os, select, signal, sys, time
main, token = int(sys.argv[1]), ("GLASS_SWEEP_OWNER=" + sys.argv[2]).encode()
while not select.select([sys.stdin], [], [], 5.0)[0]:
    pass
if os.read(sys.stdin.fileno(), 1):
    sys.exit(0)  # the sweep ended and said so
deadline = time.monotonic() + 30
while os.getppid() == main and time.monotonic() < deadline:
    time.sleep(0.02)
if os.getppid() != main:
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if token in f.read().split(b"\0"):
                    os.kill(int(d), signal.SIGKILL)
        except OSError:
            pass
"""


@contextlib.contextmanager
def reaper(launcher):
    """While a launcher that starts worker processes on this machine (joblib, submitit_local) runs,
    a reaper process (:data:`_REAPER`) stands by to kill them should this process die (Linux)."""
    local = type(launcher).__name__ in ("JoblibLauncher", "LocalLauncher")
    if not local or not os.path.isdir("/proc"):
        yield
        return
    import subprocess
    import sys
    import uuid

    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    previous = os.environ.get("GLASS_SWEEP_OWNER")
    os.environ["GLASS_SWEEP_OWNER"] = token  # inherited by every worker the launcher starts
    proc = subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), token], stdin=subprocess.PIPE)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GLASS_SWEEP_OWNER", None)
        else:
            os.environ["GLASS_SWEEP_OWNER"] = previous
        try:
            proc.stdin.write(b"x")  # the sweep ended: nothing to reap
            proc.stdin.close()
        except OSError:  # the reaper is gone already
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if type(launcher).__name__ == "JoblibLauncher":
            _stop_joblib_workers()


def _stop_joblib_workers() -> None:
    """joblib keeps its worker processes for reuse (five idle minutes): a sweep's workers end with the
    sweep instead, so they hold no memory afterwards (a notebook, a test session) and a later sweep
    starts workers that carry its own ``GLASS_SWEEP_OWNER``."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor  # the process-wide executor joblib reuses (None: never made)
    if executor is not None:
        executor.shutdown(wait=True)


def die_with_parent(origin: int, interval: float = 0.5) -> None:
    """In a worker process the sweep's process started on this machine (joblib, submitit_local): exit
    as soon as that process is gone (killed, even by SIGKILL, which it cannot pass on), instead of
    running the rest of the sweep unattended. Whatever the worker was writing stays a ``.partial``
    directory (records are written atomically and renamed last) and its claim is released by the
    operating system. Jobs on other machines (SLURM) are not children and are left alone."""
    if os.getpid() == origin or os.getppid() != origin or origin in _WATCHED:
        return
    import threading
    import time

    def watch() -> None:
        while os.getppid() == origin:  # reparented (to init or a subreaper) once the parent is gone
            time.sleep(interval)
        os._exit(1)

    _WATCHED.add(origin)
    threading.Thread(target=watch, name="glass-die-with-parent", daemon=True).start()


def _leave(partial: Path, sweep_dir: Path, key: str) -> None:
    """A job another copy of the sweep holds: its ``.partial`` is the holder's (empty until it writes
    its config: removing it then made the holder fail), so it is removed only once the job is
    finished, when it can only be this launcher's empty leftover."""
    if key in finished_jobs(sweep_dir):
        _remove_if_empty(partial)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def _rows(job_dir: Path) -> list[dict]:
    metrics = json.loads((job_dir / "metrics.json").read_text())
    shared = {"wall_time_s": metrics["wall_time_s"], "seed": metrics["seed"]}
    return [{**r, **shared} for r in metrics["rows"]]
