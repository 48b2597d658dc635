"""The paper experiments' definitions: ``experiments/reproduce/NAME.yaml`` (installed wheels carry a copy
as ``glass/experiments/reproduce``), loaded and checked for the keys ``glass reproduce`` and
``glass report`` rely on (see :mod:`glass.reproduce` for the format)."""

from __future__ import annotations

import itertools
from pathlib import Path

from glass.config import UserError

__all__ = ["SCALES", "OPTIONAL_SCALES", "definitions_dir", "names", "load", "scales_of",
           "variant_parts", "job_overrides", "swept_keys"]

SCALES = ("small", "paper")  # every definition has these
OPTIONAL_SCALES = ("large",)  # some have these: large = the strongest checkpoint at deciding sizes (a GPU)


def definitions_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "experiments" / "reproduce", here.parent / "experiments" / "reproduce"):
        if candidate.is_dir():
            return candidate
    raise UserError(f"cannot find the experiment definitions (looked under {here} and {here.parent})")


def names(scale: str | None = None) -> list[str]:
    """Every definition's name, or those that have ``scale`` (e.g. ``names("large")``)."""
    if scale not in (None, *SCALES, *OPTIONAL_SCALES):
        raise UserError(f"unknown scale {scale!r}; choose from: {', '.join(SCALES + OPTIONAL_SCALES)}")
    every = sorted(p.stem for p in definitions_dir().glob("*.yaml"))
    return every if scale in (None, *SCALES) else [n for n in every if scale in scales_of(load(n))]


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


def scales_of(spec: dict) -> list[str]:
    """The scales a definition has: small and paper always, large where it defines one."""
    return [*SCALES, *(s for s in OPTIONAL_SCALES if s in (spec.get("scales") or {}))]


def check_scale(spec: dict, scale: str) -> None:
    """Refuse a scale the definition does not have, naming those it has."""
    if scale not in scales_of(spec):
        raise UserError(f"experiment {spec.get('name', '(unnamed)')} has no scale {scale!r}; choose from: "
                        f"{', '.join(scales_of(spec))}")


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
    unknown = [s for s in spec["scales"] if s not in (*SCALES, *OPTIONAL_SCALES)]
    if unknown:
        allowed = ", ".join(SCALES + OPTIONAL_SCALES)
        raise bad(f"unknown scale {unknown[0]!r} under scales; choose from: {allowed}")
    for scale in scales_of(spec):
        _check_scale(bad, scale, spec)
    ps = spec.get("prompt_set", {})
    if not isinstance(ps, dict) or not all(isinstance(ps.get(k, []), list) for k in ("drop", "overrides")):
        raise bad("prompt_set must be a mapping with drop (keys) and overrides (key=value) lists")
    if "sweep" in ps:
        ps["sweep"] = _sweep(bad, "prompt_set.sweep", ps["sweep"])
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
    paired = report.get("paired", [])
    if not isinstance(paired, list) or not all(
        isinstance(p, dict) and {"value", "key", "pairs"} <= set(p) and isinstance(p["pairs"], list)
        and all(isinstance(ab, list) and len(ab) == 2 for ab in p["pairs"]) for p in paired
    ):  # fmt: skip
        raise bad("report.paired must be a list of {value, key, pairs: [[a, b], ...]} mappings")
    for scale in scales_of(spec):  # a table or plot must not average over a setting as if over seeds
        varied = [k for k in swept_keys(spec, scale) if k != "seed"]
        varied += ["variant"] if spec["scales"][scale].get("variants") or spec.get("variants") else []
        for item in report.get("plots", []):
            facet = item.get("facet")
            shown = {item["x"], item.get("series"), *(facet if isinstance(facet, list) else [facet])}
            for k in varied:
                if k not in shown:
                    raise bad(f"report.plots: {item['y']} against {item['x']} would average over {k}, which "
                              f"scale {scale} sweeps: make it the series or a facet (facet may list keys)")
        for item in report.get("tables", []):
            for k in varied:
                if k not in {*item["index"], item.get("columns")}:
                    raise bad(f"report.tables: {item['value']} would average over {k}, which scale {scale} "
                              "sweeps: add it to the index")


def _check_scale(bad, scale: str, spec: dict) -> None:
    """One scale block: overrides, note and ours, variants (overrides, or {overrides, sweep}), sweep."""
    block = spec["scales"].get(scale)
    if not isinstance(block, dict) or not isinstance(block.get("overrides"), list):
        raise bad(f"scales.{scale}.overrides must be a list")
    if not all(isinstance(o, str) for o in block["overrides"]):
        raise bad(f"scales.{scale}.overrides must be a list of key=value strings")
    for key in ("note", "ours"):
        if key in block and not isinstance(block[key], str):
            raise bad(f"scales.{scale}.{key} must be text")
    if block.get("sweep") is not None:
        block["sweep"] = _sweep(bad, f"scales.{scale}.sweep", block["sweep"])
    variants = block.get("variants") or spec.get("variants")
    if variants is not None and not isinstance(variants, dict):
        raise bad(f"scales.{scale}.variants must be a mapping of lists (variants: {{name: [...]}})")
    for label, variant in (variants or {}).items():
        own = isinstance(variant, dict) and set(variant) <= {"overrides", "sweep"} and isinstance(
            variant.get("overrides", []), list)  # fmt: skip
        if not (isinstance(variant, list) or own):
            raise bad(f"scales.{scale}.variants.{label} must be a list of overrides or a mapping "
                      "{overrides: [...], sweep: {key: [...]}}")
        if isinstance(variant, dict) and "sweep" in variant:
            variant["sweep"] = _sweep(bad, f"scales.{scale}.variants.{label}.sweep", variant["sweep"])


MAX_RANGE = 100_000  # values one range may stand for (a typo must not build a huge list in load())
RANGE_FORM = 'Hydra\'s range(start, stop[, step]), in quotes (seed: "range(0, 100)")'


def _sweep(bad, where: str, sweep) -> dict:
    """A checked sweep, ``{key: [values]}``, each value written ``range(start, stop[, step])`` replaced by
    the list Hydra's override parser gives for it (stop excluded, as in Python): ``"range(0, 100)"`` is
    0..99."""
    if not isinstance(sweep, dict):
        raise bad(f"{where} must be a mapping of lists or {RANGE_FORM}")
    out = {}
    for key, value in sweep.items():
        if isinstance(value, str) and value.strip().startswith("range"):
            value = _range(bad, f"{where}.{key}", value.strip())
        if not isinstance(value, list):
            raise bad(f"{where} must be a mapping of lists or {RANGE_FORM}")
        out[key] = value
    return out


def _range(bad, where: str, text: str) -> list:
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    try:
        parsed = OverridesParser.create().parse_override(f"key={text}")
        if parsed.value_type != ValueType.RANGE_SWEEP:
            raise ValueError("not a range")
        values = list(itertools.islice(parsed.sweep_iterator(), MAX_RANGE + 1))
    except Exception:  # Hydra's parse errors, or range()'s own (a zero step)
        raise bad(f"{where}: {text!r} is not {RANGE_FORM}") from None  # unquoted, YAML splits it at ','
    if not 0 < len(values) <= MAX_RANGE:
        raise bad(f"{where}: {text} selects {'no' if not values else 'over 100,000'} values; a range must "
                  f"select 1 to {MAX_RANGE:,} (as in Python, stop is excluded)")
    return values


def variant_parts(variant: list | dict) -> tuple[list, dict]:
    """A checked variant's (overrides, own sweep): a list is overrides alone, a mapping
    ``{overrides, sweep}`` may also replace keys of its scale's sweep."""
    if isinstance(variant, dict):
        return variant.get("overrides", []), variant.get("sweep", {})
    return variant, {}


def job_overrides(spec: dict, scale: str, extra: list[str]) -> tuple[list[list[str]], list[dict]]:
    """(override list per job, labels per job): variants x the cartesian product of the sweep."""
    check_scale(spec, scale)
    block = dict(spec["scales"][scale])
    given = {o.split("=", 1)[0].lstrip("+") for o in extra if "=" in o}
    if "task.prompts" in given and "prompt_set" in spec:  # the grid on a text-to-image model's prompts
        ps = spec["prompt_set"]
        keep = [o for o in block["overrides"] if o.split("=", 1)[0].lstrip("+") not in ps.get("drop", [])]
        block["overrides"] = [*keep, *ps.get("overrides", [])]
        block["sweep"] = ps.get("sweep", block.get("sweep"))
    variants = block.get("variants") or spec.get("variants") or {None: []}
    jobs, labels = [], []
    for variant, vov in variants.items():
        vov, own = variant_parts(vov)
        sweep = {**(block.get("sweep") or {}), **own}  # a variant's own sweep replaces those keys
        sweep = {k: v for k, v in sweep.items() if k not in given}  # the user's value wins
        keys = list(sweep)
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


def swept_keys(spec: dict, scale: str) -> dict:
    """Every key the scale sweeps, with every value it takes in the scale's sweep or a variant's own."""
    block = spec["scales"].get(scale) or {}
    swept = dict(block.get("sweep") or {})
    for variant in (block.get("variants") or spec.get("variants") or {}).values():
        for key, values in variant_parts(variant)[1].items():
            swept[key] = list(dict.fromkeys([*swept.get(key, []), *values]))
    return swept
