"""``glass reproduce NAME``: the paper's figures and tables as resumable sweeps.

Each experiment is one YAML file in ``experiments/reproduce/`` (installed wheels carry a copy as
``glass/experiments/reproduce``)::

    title: ...            # one line
    paper: ...            # what the paper reports (its numbers)
    ours: ...             # what our analog measures, and how it differs
    scales:
      small:              # 2 CPU cores, minutes
        overrides: [...]  # common to every job
        variants: {label: [overrides]}   # optional: named methods, crossed with the sweep; a variant
                          # may be {overrides: [...], sweep: {key: [values]}}: its sweep replaces
                          # those keys of the scale's (more seeds for the methods a comparison needs)
        sweep: {key: [values]}           # cartesian product (Hydra's basic sweeper); a value
                          # may be Hydra's range, quoted: seed: "range(0, 100)" is 0..99
      large: {...}        # optional: the strongest checkpoint at sizes that decide the paper's
                          # rankings (minutes on one GPU, hours on 2 CPU cores); any scale may
                          # carry note (cost, shown in the report) and ours (replaces ours there)
      paper: {...}        # the paper's sizes, for GPU machines (``note`` says what it costs)
    prompt_set:           # optional: with task.prompts=FILE on the command line (a text-to-image
      drop: [...]         # model), these scale overrides are dropped, these added, and the sweep
      overrides: [...]    # replaced: the grid runs on the prompt set
      sweep: {...}
    report:
      plots:  [{x, y, series, facet, logx, logy, floor, ref, ref_label, title}]   # facet: a key or a
      tables: [{index: [...], columns, value}]       # list (a panel per combination); every key a scale
      paired: [{value, key, pairs: [[a, b], ...]}]   # sweeps but seed must be shown (never averaged
                                                     # as if seeds); paired: per-seed differences a − b

The jobs go to ``<out_dir>/reproduce/NAME/<scale>/`` (one directory per job, resumable as any
sweep) and the report (``NAME.png``, ``NAME.md``) is written next to them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from glass.definitions import SCALES, job_overrides, load, names, swept_keys

__all__ = ["SCALES", "names", "load", "job_overrides", "reproduce"]

NEUTRAL = ("out_dir", "logger")  # overrides that change where results go or are logged, not the results


def variant_name(scale: str, extra: list[str]) -> str:
    """The sweep directory's name: the scale, and for extra overrides that change results a hash of
    them (``small-3f2a9c1e``), so that ``glass reproduce NAME model=gmm`` never mixes its jobs into the
    plain run's ``small/``."""
    changing = sorted(o for o in extra if o.lstrip("+~").split("=", 1)[0].split(".")[0].split("/")[0]
                      not in NEUTRAL)  # fmt: skip
    if not changing:
        return scale
    return f"{scale}-{hashlib.sha256(' '.join(changing).encode()).hexdigest()[:8]}"


def promptset_variant(scale: str, prompts: str, family: str, extra: list[str]) -> str:
    """A prompt-set reproduction's directory name: ``<scale>-<file>-<family>``, and a hash of the other
    overrides that change results (``paper-evaluation_metadata-flux-3f2a9c1e``), so a run steering
    another reward or with other options never shares a directory with this one."""
    other = [o for o in extra if o.lstrip("+~").split("=", 1)[0] not in ("task.prompts", "model")]
    return f"{scale}-{Path(prompts).stem}-{family}{variant_name(scale, other)[len(scale):]}"


def reproduce(
    name: str,
    scale: str = "small",
    extra: list[str] | None = None,
    out_dir: str | None = None,
    progress=None,
    announce=None,
    hydra_overrides: list[str] | None = None,
    fresh: bool = False,
) -> tuple[Path, list[dict], list]:
    """Run (or resume) the experiment's sweep and write its report; returns (directory, rows, failures).
    It goes to ``<out_dir>/reproduce/NAME/<scale>`` (``<scale>-<hash>`` with extra overrides that change
    results, see :func:`variant_name`); ``fresh`` starts a new directory beside it instead of resuming."""
    from glass.config import check_no_sweep
    from glass.experiment import prepare_jobs, release
    from glass.report import report
    from glass.sweep import sweep

    spec = load(name)
    extra = list(extra or [])
    check_no_sweep(extra, f"glass reproduce runs the sweep of experiments/reproduce/{name}.yaml: give one "
                   "value per key here, or edit the definition")  # fmt: skip
    if out_dir is not None:
        extra.append(f"out_dir={out_dir}")
    overrides, labels = job_overrides(spec, scale, extra)
    given = {o.split("=", 1)[0].lstrip("+") for o in extra if "=" in o}
    swept = swept_keys(spec, scale)
    for key in sorted(k for k in swept if k in given):  # the user's value wins: say what it replaces
        if announce:
            announce(f"{key}: your value replaces the definition's sweep over {swept[key]} "
                     f"({len(overrides)} jobs)")
    jobs = prepare_jobs(overrides)  # everything validated (and the output checked) first
    if scale == "large" and announce and str(jobs[0].cfg.model.get("device", "cpu")) == "cpu":
        note = spec["scales"]["large"].get("note") or "hours on 2 CPU cores; add model.device=cuda on a GPU"
        announce(f"--scale large on the CPU: {note}")
    target = Path(jobs[0].cfg.out_dir) / "reproduce" / name / variant_name(scale, extra)
    definition = {**spec, "scale": scale}
    if target.name != scale:
        definition["overrides"] = [o for o in extra if not o.startswith("out_dir=")]
    if any(j.task.prompts for j in jobs):  # a prompt set: its own directory per prompt file
        family = jobs[0].cfg.model.get("family") or "model"
        target = target.with_name(promptset_variant(scale, str(jobs[0].task.prompts.path), family, extra))
        definition["prompts"] = str(jobs[0].task.prompts.path)
    if fresh:
        from datetime import datetime

        target = target.with_name(f"{target.name}-{datetime.now():%Y%m%d-%H%M%S}")
    try:
        base, rows, failures = sweep(
            jobs, target, hydra_overrides, progress, group=f"{name}-{scale}", definition=definition,
            announce=announce, labels=labels,
        )  # fmt: skip
    finally:
        release(jobs)
    if rows:
        report(base)
    return base, rows, failures
