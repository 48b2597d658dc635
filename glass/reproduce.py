"""``glass reproduce NAME``: the paper's figures and tables as resumable sweeps.

Each experiment is one YAML file in ``experiments/reproduce/`` (installed wheels carry a copy as
``glass/experiments/reproduce``)::

    title: ...            # one line
    paper: ...            # what the paper reports (its numbers)
    ours: ...             # what our analog measures, and how it differs
    scales:
      small:              # 2 CPU cores, minutes
        overrides: [...]  # common to every job
        variants: {label: [overrides]}   # optional: named methods, crossed with the sweep
        sweep: {key: [values]}           # cartesian product (Hydra's basic sweeper)
      paper: {...}        # the paper's sizes, for GPU machines (``note`` says what it costs)
    report:
      plots:  [{x, y, series, facet, logx, logy, title}]
      tables: [{index: [...], columns, value}]

The jobs go to ``<out_dir>/reproduce/NAME/<scale>/`` (one directory per job, resumable as any
sweep) and the report (``NAME.png``, ``NAME.md``) is written next to them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from glass.config import UserError

__all__ = ["definitions_dir", "names", "load", "job_overrides", "reproduce"]

SCALES = ("small", "paper")


def definitions_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "experiments" / "reproduce", here.parent / "experiments" / "reproduce"):
        if candidate.is_dir():
            return candidate
    raise UserError(f"cannot find the experiment definitions (looked under {here} and {here.parent})")


def names() -> list[str]:
    return sorted(p.stem for p in definitions_dir().glob("*.yaml"))


def load(name: str) -> dict:
    """The definition ``name``, checked for the keys the runner and the report need."""
    import yaml

    known = names()
    if name not in known:
        raise UserError(f"unknown experiment {name!r}; choose from: {', '.join(known)}")
    path = definitions_dir() / f"{name}.yaml"
    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise UserError(f"experiment {name}: {path} is not valid YAML: {problem}{where}") from None
    _check_definition(name, spec)
    spec["name"] = name
    return spec


def _check_definition(name: str, spec) -> None:
    """The shape ``glass reproduce`` and ``glass report`` rely on (see the module docstring)."""

    def bad(what: str) -> UserError:
        return UserError(f"experiment {name}: {what}")

    if not isinstance(spec, dict):
        raise bad("the definition must be a mapping with title, scales and report")
    if not isinstance(spec.get("title"), str) or not spec["title"].strip():
        raise bad("title must be one line of text")
    if not isinstance(spec.get("scales"), dict):
        raise bad(f"scales must be a mapping of {' and '.join(SCALES)}")
    for scale in SCALES:
        block = spec["scales"].get(scale)
        if not isinstance(block, dict) or not isinstance(block.get("overrides"), list):
            raise bad(f"scales.{scale}.overrides must be a list")
        if not all(isinstance(o, str) for o in block["overrides"]):
            raise bad(f"scales.{scale}.overrides must be a list of key=value strings")
        for key in ("variants", "sweep"):
            value = (block.get(key) or spec.get(key)) if key == "variants" else block.get(key)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
                raise bad(f"scales.{scale}.{key} must be a mapping of lists ({key}: {{name: [...]}})")
    report = spec.get("report", {})
    if not isinstance(report, dict):
        raise bad("report must be a mapping with plots and tables")
    for key, needs in (("plots", ("x", "y")), ("tables", ("index", "value"))):
        items = report.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise bad(f"report.{key} must be a list of mappings")
        for item in items:
            if any(k not in item for k in needs):
                raise bad(f"every entry of report.{key} needs {' and '.join(needs)}")
            if key == "tables" and not isinstance(item["index"], list):
                raise bad("report.tables: index must be a list of columns")


def job_overrides(spec: dict, scale: str, extra: list[str]) -> tuple[list[list[str]], list[dict]]:
    """(override list per job, labels per job): variants x the cartesian product of the sweep."""
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; choose from: {', '.join(SCALES)}")
    block = spec["scales"][scale]
    variants = block.get("variants") or spec.get("variants") or {None: []}
    given = {o.split("=", 1)[0].lstrip("+") for o in extra if "=" in o}
    sweep = {k: v for k, v in (block.get("sweep") or {}).items() if k not in given}  # the user's value wins
    keys = list(sweep)
    jobs, labels = [], []
    for variant, vov in variants.items():
        for values in itertools.product(*(sweep[k] for k in keys)):
            ov = [*block["overrides"], *vov, *(f"{k}={_value(v)}" for k, v in zip(keys, values)), *extra]
            jobs.append(_dedupe(ov))
            labels.append({"variant": variant} if variant is not None else {})
    return jobs, labels


def _value(v) -> str:
    return "null" if v is None else str(v)


def _dedupe(overrides: list[str]) -> list[str]:
    """Later overrides of the same key win (so variants and command-line overrides replace defaults)."""
    last = {}
    for o in overrides:
        last[o.split("=", 1)[0].lstrip("+")] = o
    return list(last.values())


def reproduce(
    name: str,
    scale: str = "small",
    extra: list[str] | None = None,
    out_dir: str | None = None,
    progress=None,
    announce=None,
    hydra_overrides: list[str] | None = None,
) -> tuple[Path, list[dict], list]:
    """Run (or resume) the experiment's sweep and write its report; returns (directory, rows, failures)."""
    from glass.config import compose
    from glass.report import report
    from glass.runner import _check_writable, _Shared, build_job
    from glass.sweep import sweep

    spec = load(name)
    extra = list(extra or [])
    if out_dir is not None:
        extra.append(f"out_dir={out_dir}")
    overrides, labels = job_overrides(spec, scale, extra)
    shared = _Shared()
    jobs = [build_job(ov, compose(ov), shared) for ov in overrides]  # everything validated first
    root = Path(jobs[0].cfg.out_dir)
    _check_writable(root)
    target = root / "reproduce" / name / scale
    definition = {**spec, "scale": scale}
    base, rows, failures = sweep(
        jobs, target, hydra_overrides, progress, group=f"{name}-{scale}", definition=definition,
        announce=announce, labels=labels,
    )  # fmt: skip
    if rows:
        report(base)
    return base, rows, failures
