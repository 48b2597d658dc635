"""``glass report PATH``: plots and markdown tables from a finished (or partly finished) sweep, without
recomputing anything.

A sweep made by ``glass reproduce`` carries its definition (``sweep.json``), whose ``report`` block
says what to draw; any other sweep gets a generic report: its main metric against the number of
steps M, one line per sampler, one panel per other swept parameter. Values are averaged over the
jobs that differ only in what the plot does not show (e.g. seeds), with standard errors.

``report_from_summary`` redraws a committed report from its ``summary.csv`` alone (no job directories):
``python -m experiments.regenerate --reports`` redraws every committed one after a change here.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from glass.config import RunFailed, UserError
from glass.figtext import VALUE_WORDS as _VALUE_WORDS
from glass.figtext import label as _label
from glass.figtext import words as _words
from glass.figtext import wrap as _wrap
from glass.files import write_text_atomic

__all__ = ["report", "report_from_summary", "read_summary", "with_kernel_columns", "aggregate",
           "markdown_table", "t_critical", "beyond", "interval", "paired_stats", "seeds_for_power",
           "seeds_needed", "interval_text", "LOWER_IS_BETTER"]

_LABEL = re.compile(r"^(?P<kernel>.*) M=(?P<steps>\d+)$")
_METRICS = ("fid", "fid_inception", "energy", "pearson", "reward", "sliced_w2", "spearman", "target_accuracy")
_SCORES = ("consistency", "label_agreement")  # a generic report's last resort (no standard error)
LOWER_IS_BETTER = frozenset({"fid", "fid_inception", "energy", "sliced_w2"})  # distances; the rest: scores


def _number(v):
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    return v


def with_kernel_columns(rows: list[dict]) -> list[dict]:
    """Add ``kernel`` and ``steps`` (parsed from the sampler label) and numbers for swept values."""
    out = []
    for r in rows:
        r = {k: _number(v) for k, v in r.items()}
        m = _LABEL.match(str(r.get("sampler", "")))
        if m:
            r.setdefault("kernel", m["kernel"])
            r.setdefault("steps", int(m["steps"]))
        out.append(r)
    return out


def aggregate(rows: list[dict], keys: list[str], value: str) -> dict[tuple, tuple[float, float, int]]:
    """(mean, standard error, count) of ``value`` per distinct combination of ``keys``, over jobs:
    rows of one job (e.g. a per-job value copied onto each kernel's row) count once. A single job
    with its own ``<value>_se`` keeps it."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        v = r.get(value)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            groups.setdefault(tuple(r.get(k) for k in keys), {}).setdefault(r.get("job"), []).append(r)
    out = {}
    for key, jobs in groups.items():
        rs = [job_rows[0] for job_rows in jobs.values()]
        vals = [sum(float(x[value]) for x in job_rows) / len(job_rows) for job_rows in jobs.values()]
        mean = sum(vals) / len(vals)
        if len(vals) > 1:
            var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
            se = math.sqrt(var / len(vals))
        else:
            se = float(rs[0].get(f"{value}_se", float("nan")))
        out[key] = (mean, se, len(vals))
    return out


def t_critical(n: int, level: float = 0.95) -> float:
    """Half-width, in standard errors, of the two-sided ``level`` confidence interval of a mean of ``n``
    values (Student's t with n − 1 degrees of freedom: 4.30 at 3 seeds, 2.36 at 8, 2.13 at 16, 2.07 at
    24, tending to 1.96), so a verdict at few seeds is as cautious as its sample size requires."""
    if n < 2:
        return math.nan
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1))


def beyond(mean: float, se: float, n: int, level: float = 0.95) -> bool:
    """Whether the ``level`` t interval of a mean over ``n`` values (``mean`` ± t · ``se``) excludes 0."""
    return abs(mean) > t_critical(n, level) * se  # False with one value or no se: NaN compares False


POWER_CAP = 100_000  # seeds_for_power looks no further: a difference this small is level in practice


def interval(mean: float, se: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` t interval (``mean`` ± t · ``se``) of a mean over ``n`` values: what
    :func:`beyond` tests, as its two ends."""
    half = t_critical(n, level) * se
    return mean - half, mean + half


def _plannable(mean: float, se: float, n: int) -> bool:
    """A difference a seed count can be planned for: two seeds or more, a finite positive standard
    error, a nonzero mean."""
    return n > 1 and math.isfinite(se) and se > 0 and mean != 0


def seeds_for_power(mean: float, se: float, n: int, power: float = 0.8, level: float = 0.95,
                    cap: int = POWER_CAP) -> int | None:
    """A planning number, not a result: the fewest seeds at which the ``level`` t interval would
    exclude 0 with probability ``power`` if the true mean difference were the measured ``mean`` and
    the seed-to-seed spread the measured one (standard deviation ``se`` · √n; two-sided t test,
    noncentral t). It is for a fresh run of that many seeds: adding seeds to a run and testing again
    until it resolves would make "resolved" more likely than the level says. None without a spread
    to go on (one seed, zero difference) or beyond ``cap``."""
    if not _plannable(mean, se, n):
        return None
    sd = se * math.sqrt(n)
    from scipy.stats import nct, norm

    effect = abs(mean) / sd
    # the known-spread (normal) answer is a lower bound on the t test's: start the search there
    m = max(2, math.floor(((norm.ppf(0.5 + level / 2) + norm.ppf(power)) / effect) ** 2))
    while m <= cap:
        t, nc = t_critical(m, level), effect * math.sqrt(m)
        # both tails as upper tails (T < -t is -T > t): scipy's nct.cdf turns NaN at large nc
        if nct.sf(t, m - 1, nc) + nct.sf(t, m - 1, -nc) >= power:
            return m
        m += 1
    return None


def seeds_needed(mean: float, se: float, n: int) -> str | None:
    """:func:`seeds_for_power` as the reports and the README print it ("68", "more than 100,000"), None
    when there is nothing to plan for (one seed, or a zero difference)."""
    m = seeds_for_power(mean, se, n)
    if m is not None:
        return f"{m:,}"
    return f"more than {POWER_CAP:,}" if _plannable(mean, se, n) else None


def interval_text(lo: float, hi: float, se: float) -> str:
    """A 95 % interval "lo to hi" at the decimals of its standard error (two significant digits), the
    same for both ends, without a negative zero."""
    digits = max(0, 1 - math.floor(math.log10(se))) if se > 0 and math.isfinite(se) else 4
    return " to ".join(f"{round(v, digits) + 0.0:.{digits}f}" for v in (lo, hi))


def paired_difference(rows: list[dict], value: str, a, b, key: str) -> tuple[float, float, int]:
    """(mean, standard error, count) over seeds of ``value`` at ``key == a`` minus at ``key == b``, the
    two taken from the same seed: methods that share a seed's noise streams vary together from seed to
    seed, and the difference cancels that. Raises KeyError when no seed has both, or when a seed has
    several values for one of them (rows that differ in another swept key: no single pairing)."""
    by_seed: dict = {}
    for r in rows:
        v = r.get(value)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            seen = by_seed.setdefault(r.get("seed"), {})
            k = str(r.get(key))
            if k in seen and k in (str(a), str(b)):
                raise KeyError(f"seed {r.get('seed')} has several {value} values for {key} = {k}")
            seen[k] = float(v)
    d = [x[str(a)] - x[str(b)] for x in by_seed.values() if str(a) in x and str(b) in x]
    if not d:
        raise KeyError(f"no seed with both {a!r} and {b!r}")
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) if len(d) > 1 else math.nan
    return mean, se, len(d)


def paired_stats(rows: list[dict], value: str, key: str, pairs: list) -> list[dict]:
    """Per pair (a, b) of ``key`` values, the per-seed difference a − b of ``value``
    (:func:`paired_difference`): ``a``, ``b`` and either ``why`` no seed pairs them, or ``mean``, ``se``,
    ``n`` and, with two seeds or more, its 95 % t ``interval`` and whether it excludes 0 (``resolved``).
    The report's paired table and paired plot both read these."""
    out = []
    for a, b in pairs:
        try:
            mean, se, n = paired_difference(rows, value, a, b, key)
        except KeyError as e:
            out.append({"a": a, "b": b, "why": e.args[0]})
            continue
        d = {"a": a, "b": b, "mean": mean, "se": se, "n": n}
        if math.isfinite(se):
            d.update(interval=interval(mean, se, n), resolved=beyond(mean, se, n))
        out.append(d)
    return out


def paired_table(rows: list[dict], value: str, key: str, pairs: list) -> str:
    """One line per pair (a, b) of ``key`` values: the per-seed difference a − b of ``value``, mean ±
    standard error over the seeds, its 95 % t interval (``t_critical``: the largest gap either way the
    data still allows), whether that interval excludes 0, and where it does not, how many seeds a fresh
    run would need to decide it (:func:`seeds_for_power`, a planning number)."""
    return _paired_markdown(paired_stats(rows, value, key, pairs), value, key)


def _paired_markdown(stats: list[dict], value: str, key: str) -> str:
    lines = [f"| {key}: a − b | {value} difference | seeds | 95 % interval | excludes 0 | "
             "seeds for 80 % power if the difference is as measured |", "|---" * 6 + "|"]  # fmt: skip
    for d in stats:
        a, b = d["a"], d["b"]
        if "why" in d:
            lines.append(f"| {a} − {b} | — ({d['why']}) | 0 | — | — | — |")
            continue
        mean, se, n = d["mean"], d["se"], d["n"]
        ends = excluded = needed = "—"
        if "interval" in d:
            ends = interval_text(*d["interval"], se)
            excluded = f"yes: {a if mean > 0 else b} higher" if d["resolved"] else "no"
            if not d["resolved"]:
                needed = seeds_needed(mean, se, n) or "—"
        lines.append(f"| {a} − {b} | {_fmt(mean, se)} | {n} | {ends} | {excluded} | {needed} |")
    return "\n".join(lines) + "\n"


def _order(values) -> list:
    values = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) for v in values):
        return sorted(values)
    return values  # first-seen order (the definition's order of variants)


def _fmt(mean: float, se: float) -> str:
    digits = 4 if abs(mean) < 10 else 1 if abs(mean) >= 100 else 2
    text = f"{mean:.{digits}f}"
    if math.isfinite(se):
        text += f" ± {se:.{digits}f}"
    return text


def markdown_table(rows: list[dict], index: list[str], value: str, columns: str | None = None) -> str:
    """Rows = distinct ``index`` combinations, columns = distinct values of ``columns`` (or one
    column), cells = mean ± standard error of ``value``; a cell over fewer jobs than the table's fullest
    (a value NaN or missing in some seeds: they are left out of its mean) says its count, ``(n=3)``."""
    cols = _order(r.get(columns) for r in rows if value in r) if columns else [None]
    keys = [*index, columns] if columns else list(index)
    agg = aggregate(rows, keys, value)
    if not agg:
        return f"_(no values of {value})_\n"
    idx = list(dict.fromkeys(k[: len(index)] for k in agg))
    full = max(n for _, _, n in agg.values())
    head = [*index, *(f"{columns}={c}" if columns else value for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in idx:
        cells = []
        for c in cols:
            got = agg.get((*key, c) if columns else key)
            cells.append(_fmt(got[0], got[1]) + (f" (n={got[2]})" if got[2] < full else "") if got else "—")
        lines.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _style(ax, spec: dict, xs: list, numeric: bool, title: str) -> None:
    """Ticks, log axes, labels and grid of one panel."""
    if not numeric:
        ax.set_xticks(range(len(xs)), [_label(v) for v in xs], rotation=30, ha="right")
    if spec.get("logx") and numeric:
        ax.set_xscale("log", base=2)
        if all(float(v).is_integer() for v in xs):
            ax.set_xticks(xs, [str(v) for v in xs])
        else:  # e.g. effective NFE: label the powers of two only
            from matplotlib.ticker import FormatStrFormatter

            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    if spec.get("logy"):
        ax.set_yscale("log")
    ax.set_xlabel(_words(spec["x"]))
    ax.set_ylabel(_words(spec["y"]))
    width = ax.get_position().width * ax.figure.get_figwidth()  # inches: about 11 characters each
    ax.set_title(_wrap(title, max(20, int(width * 11))), fontsize=10)
    ax.grid(alpha=0.3)


def _panel_title(spec: dict, facet: str | None, value) -> str:
    """``t = 0.05`` for a facet's panel, the value alone where it is a name (a method's label, a
    reward: "inpainting"), the plot's title when there are no facets."""
    if not facet:
        return _label(spec.get("title", ""))
    if facet in spec.get("facet_titles", {}):  # a generic sweep's configurations: "t = 0.2, model = gmm"
        return spec["facet_titles"][facet][value]
    named = facet in ("variant", "reward", "kernel", "sampler") or str(value) in _VALUE_WORDS
    return _label(value) if named else f"{_words(facet)} = {value}"


def _plot(rows: list[dict], spec: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, series, facet = spec["x"], spec["y"], spec.get("series"), spec.get("facet")
    rows = [r for r in rows if y in r]
    if isinstance(facet, list):  # a panel per combination of several keys ("truth: SDE, t = 0.05")
        keys, facet = facet, "_facet"
        rows = [{**r, "_facet": ", ".join(_panel_title(spec, k, r.get(k)) for k in keys)} for r in rows]
        spec = {**spec, "facet_titles": {"_facet": {r["_facet"]: r["_facet"] for r in rows}}}
    facets = _order(r.get(facet) for r in rows) if facet else [None]
    width = max(6.4, 4.2 * len(facets) + 0.6)  # one panel: room for its title and the figure's
    fig, axes = plt.subplots(1, len(facets), figsize=(width, 3.6 if len(facets) > 1 else 4.4), squeeze=False)
    xs = _order(r.get(x) for r in rows)
    numeric = all(isinstance(v, (int, float)) for v in xs)
    for ax, f in zip(axes[0], facets):
        sub = [r for r in rows if facet is None or r.get(facet) == f]
        names = _order(r.get(series) for r in sub) if series else [None]
        agg = aggregate(sub, [series or "_", x] if series else [x], y)
        for i, s in enumerate(names):
            pts = [
                (xv, *agg[(s, xv) if series else (xv,)]) for xv in xs if ((s, xv) if series else (xv,)) in agg
            ]
            if not pts:
                continue
            px, mean, se = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            err = [e if math.isfinite(e) else 0.0 for e in se]
            label = _label(s) if series else None
            if numeric:
                ax.errorbar(px, mean, yerr=err, marker="o", capsize=3, label=label)
                continue
            step = 0.8 / len(names)
            pos = [xs.index(v) + (i - (len(names) - 1) / 2) * step for v in px]
            if spec.get("logy"):  # a bar's length on a log axis depends on where the axis starts: points
                ax.errorbar(pos, mean, yerr=err, fmt="o", capsize=3, label=label)
            else:
                ax.bar(pos, mean, width=step, yerr=err, capsize=3, label=label)
        _style(ax, spec, xs, numeric, _panel_title(spec, facet, f))
        if series and len(names) > 1:
            ax.legend(fontsize=8)
    _levels(axes[0], rows, spec)
    if spec.get("logy"):
        from glass.plotting import plain_log_ticks

        for ax in axes[0]:
            plain_log_ticks(ax)
    full = _label(title + (f" — {spec['title']}" if facet and spec.get("title") else ""))
    fig.suptitle(_wrap(full, int(fig.get_figwidth() * 12)), fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")  # its own name: copies of a sweep
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _levels(axes, rows: list[dict], spec: dict) -> None:
    """Horizontal lines: ``floor``, a column with the metric's noise floor (a sampler cannot do better),
    and ``ref``, a level the metric is read against (e.g. consistency 1), labelled ``ref_label``."""
    floor = spec.get("floor")
    level = [float(r[floor]) for r in rows if floor and isinstance(r.get(floor), (int, float))]
    for ax in axes:
        if level:
            ax.axhline(sum(level) / len(level), color="gray", ls="--", lw=1, label="noise floor")
        if spec.get("ref") is not None:
            ax.axhline(float(spec["ref"]), color="k", ls=":", lw=1, label=spec.get("ref_label"))
        if level or (spec.get("ref") is not None and spec.get("ref_label")):
            ax.legend(fontsize=8)  # with the series' labels, if any


def _paired_plot(blocks: list[tuple[dict, list]], path: Path, title: str) -> None:
    """One panel per ``report.paired`` block (its :func:`paired_stats` with an interval): each pair's per-seed
    difference a − b with its 95 % interval, a line at 0, resolved pairs (the interval excludes 0) in
    colour, the rest grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = max(2.4, 0.9 + 0.38 * max(len(got) for _, got in blocks))
    fig, axes = plt.subplots(1, len(blocks), figsize=(6.4 * len(blocks), height), squeeze=False)
    for ax, (p, got) in zip(axes[0], blocks):
        for y, d in enumerate(got):
            (lo, hi), mean = d["interval"], d["mean"]
            colour = "C0" if d["resolved"] else "0.55"
            ax.errorbar([mean], [y], xerr=[[mean - lo], [hi - mean]], fmt="o", color=colour, capsize=3)
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_yticks(range(len(got)), [f"{_side(d['a'])} − {_side(d['b'])}" for d in got], fontsize=8)
        ax.invert_yaxis()  # the definition's first pair on top, as in the table
        seeds = {d["n"] for d in got}
        over = f"{min(seeds)}–{max(seeds)}" if len(seeds) > 1 else f"{next(iter(seeds))}"
        better = "< 0" if p["value"] in LOWER_IS_BETTER else "> 0"
        ax.set_xlabel(f"{_words(p['value'])}: a − b within a seed, {over} seeds ({better}: a better)")
        ax.set_title("95 % intervals; blue: excludes 0, grey: not resolved", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    full = _label(f"{title}: paired differences")
    fig.suptitle(_wrap(full, int(fig.get_figwidth() * 12)), fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")  # its own name: copies of a sweep
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def _side(value) -> str:
    """One side of a paired difference as figure text, in parentheses where it is itself a sum
    ("(flow + guidance) − SDE")."""
    text = _label(value)
    return f"({text})" if re.search(r"\s[+−-]\s", text) else text


def _metric(rows: list[dict]) -> str | None:
    """The column a generic report shows: the first known metric, else the first value that comes
    with a standard error (a held-out reward, ``curvature``), else a posterior or inverse task's
    score; None (e.g. ``metric=none``) when the rows hold none of them."""
    known = next((m for m in _METRICS if any(m in r for r in rows)), None)
    if known is not None:
        return known
    with_se = (k for r in rows for k, v in r.items() if f"{k}_se" in r and isinstance(v, (int, float)))
    return next(with_se, next((m for m in _SCORES if any(m in r for r in rows)), None))


def _generic(rows: list[dict]) -> dict:
    metric = _metric(rows)
    if metric is None:  # nothing to tabulate: the report says how many jobs finished (and merges shards)
        return {"name": "summary", "title": "sweep summary (no metric in the results)", "report": {}}
    # every swept override (group choices too) distinguishes configurations, except seeds (averaged)
    # and the sampler's own keys (the kernel label carries them)
    keys = [o.split("=", 1)[0].lstrip("+") for r in rows for o in (r.get("overrides") or "").split()]
    swept = [
        k for k in dict.fromkeys(keys)
        if k not in ("seed", "out_dir", "sampler") and not k.startswith("sampler.")
        and len({str(r.get(f"{k}_cfg", r.get(k))) for r in rows}) > 1
    ]  # fmt: skip
    facet, titles = None, {}
    if swept:
        facet = "config"
        for r in rows:
            pairs = [(k, r.get(f"{k}_cfg", r.get(k))) for k in swept]
            r["config"] = " ".join(f"{k}={v}" for k, v in pairs)  # tables: the overrides
            titles[r["config"]] = ", ".join(f"{_words(k)} = {v}" for k, v in pairs)  # plots: in words
    steps = len({r.get("steps") for r in rows}) > 1
    index = [k for k in (facet, "kernel" if steps else "sampler") if k]
    if steps:  # the metric against M, a line per kernel, a panel per configuration
        plots = [{"x": "steps", "y": metric, "series": "kernel", "facet": facet, "logx": True,
                  "facet_titles": {facet: titles}}]  # fmt: skip
    elif len(swept) == 1:  # one setting at one M: the metric against it (a line where it is a number)
        k = swept[0]
        column = f"{k}_cfg" if any(f"{k}_cfg" in r for r in rows) else k
        plots = [{"x": column, "y": metric, "series": "sampler"}]
    elif swept:  # several settings: bars per configuration
        plots = [{"x": "config", "y": metric, "series": "sampler"}]
    else:  # the samplers alone
        plots = [{"x": "sampler", "y": metric}]
    return {
        "name": "summary",
        "title": f"{_words(metric)} by sampler",
        "report": {"plots": plots, "tables": [{"index": index, "columns": "steps" if steps else None,
                                               "value": metric}]},
    }  # fmt: skip


def _sweep_meta(path: Path) -> dict:
    """sweep.json of the sweep at ``path`` ({} when it has job directories but lost it)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{str(path)!r} is a file, not a sweep directory")
    if not path.is_dir():
        raise UserError(f"no such directory: {str(path)!r}")
    meta_file = path / "sweep.json"
    jobs = any(p.is_dir() and (p / "job.json").is_file() for p in path.iterdir())
    if not meta_file.is_file():
        if not jobs:
            raise UserError(f"{str(path)!r} is not a sweep directory (no sweep.json and no job directories)")
        return {}
    try:
        meta = json.loads(meta_file.read_text())
        ok = isinstance(meta, dict) and isinstance(meta.get("jobs", []), list)
        damage = None if ok else "not a sweep record"
    except ValueError:
        meta, damage = {}, "not JSON"
    if damage and not jobs:
        raise UserError(f"{meta_file} is damaged ({damage})")
    return {} if damage else meta  # damaged beside job directories: the finished jobs are reported


def _header(spec: dict, title: str, scale: str | None) -> list[str]:
    md = [f"# {title}", ""]
    if scale:
        md += [f"Scale: **{scale}**. {spec['scales'][scale].get('note', '')}".strip(), ""]
    if spec.get("paper"):
        md += [f"**Paper:** {spec['paper']}", ""]
    ours = (spec["scales"].get(scale) or {}).get("ours") if scale else None  # a scale's own description
    ours = ours or spec.get("ours")
    if spec.get("prompts"):  # the grid was run on a prompt set (reproduce's prompt_set block)
        ours = f"{spec.get('prompt_set', {}).get('ours', '')} Prompts: `{spec['prompts']}`.".strip()
    if ours:
        md += [f"**Here:** {ours}", ""]
    return md


def report(path: str | Path) -> list[Path]:
    """Redraw the plots and tables of the sweep at ``path``; returns the files written. A disk that is
    read-only or full is one RunFailed naming the sweep (every file is replaced atomically, so what
    was there stays whole)."""
    try:
        return _report(Path(path))
    except OSError as e:
        raise RunFailed(
            f"cannot write the report into {str(path)!r}: {e.strerror or type(e).__name__} (files already "
            "there are intact)"
        ) from None


def read_summary(path: str | Path) -> list[dict]:
    """The rows of a sweep's ``summary.csv`` as the report reads them: numbers as numbers, ``kernel`` /
    ``steps`` parsed from the sampler label, an empty cell a value that row does not have."""
    import csv

    with open(path, newline="") as f:
        return with_kernel_columns([{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)])


def report_from_summary(path: str | Path, name: str, scale: str = "small", draw: bool = True) -> list[Path]:
    """Redraw the report of reproduce definition ``name`` at ``scale`` from the ``summary.csv`` in
    ``path`` (a committed result directory: no job directories, no sweep.json), with the current
    definition; ``draw=False`` writes the markdown only. Returns the files written."""
    from glass.definitions import check_scale, job_overrides, load

    path, spec = Path(path), load(name)
    check_scale(spec, scale)
    if not (path / "summary.csv").is_file():
        raise UserError(f"no summary.csv in {str(path)!r}")
    rows = read_summary(path / "summary.csv")
    if not rows:
        raise UserError(f"{path / 'summary.csv'} has no rows")
    # the jobs the definition runs, not those the file holds: a job missing from it shows ("79 of 80")
    jobs = [{"overrides": ov} for ov in job_overrides(spec, scale, [])[0]]
    try:
        return _render(path, rows, {"definition": {**spec, "scale": scale}, "jobs": jobs}, draw)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise RunFailed(f"cannot write the report into {str(path)!r}: {why}") from None


def _report(path: Path) -> list[Path]:
    from glass.sweep import collect

    meta = _sweep_meta(path)
    meta_file = path / "sweep.json"
    rows = with_kernel_columns(collect(path))
    if not rows and not meta_file.is_file():  # e.g. outputs/runs/<date>: single runs, not a sweep
        raise UserError(
            f"{str(path)!r} is not a sweep directory (no sweep.json, and no finished sweep jobs); "
            "glass report reads outputs/multirun/... or outputs/reproduce/NAME/SCALE"
        )
    if not rows:
        from glass.sweep import damaged_jobs

        damaged = damaged_jobs(path)
        why = "; ".join(f"{name}: {reason}" for name, reason in list(damaged.items())[:3])
        more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        raise UserError(
            f"no finished jobs in {path}" + (f": damaged records ({why}{more}); run the sweep again to "
                                             "compute them" if damaged else " yet")
        )  # fmt: skip
    return _render(path, rows, meta)


def _render(path: Path, rows: list[dict], meta: dict, draw: bool = True) -> list[Path]:
    """The plots and markdown of ``rows`` (summary rows with kernel columns) into ``path``; ``meta`` is
    the sweep record (its definition and job list; {} for a generic report)."""
    spec = meta.get("definition") or _generic(rows)
    if meta.get("definition"):  # the current definition's report block wins (plots may have been edited)
        from glass.definitions import load, names

        if spec.get("name") in names():
            spec = {**spec, **{k: v for k, v in load(spec["name"]).items() if k != "scales"}}
    name = spec.get("name", "summary")
    title = spec.get("title", name)
    scale = spec.get("scale")
    written = []
    plots = spec.get("report", {}).get("plots", [])
    md = _header(spec, title, scale)
    md += [_finished_line(rows, meta, spec), ""]
    models = _order(r["model"] for r in rows if r.get("model"))
    about = ([f"model {models[0]}"] if len(models) == 1 else []) + ([f"scale {scale}"] if scale else [])
    figure_title = f"{title} — {', '.join(about)}" if about else title  # small and large runs told apart
    for i, plot in enumerate(plots):
        png = path / (f"{name}.png" if len(plots) == 1 else f"{name}-{i + 1}.png")
        if draw:
            _plot(rows, plot, png, figure_title)
            written.append(png)
        md += [f"![{plot['y']}]({png.name})", ""]
    for table in spec.get("report", {}).get("tables", []):
        if not any(table["value"] in r for r in rows):  # e.g. held-out rewards on an MNIST run
            continue
        md += [
            f"**{table['value']}**",
            "",
            markdown_table(rows, table["index"], table["value"], table.get("columns")),
        ]
    paired = spec.get("report", {}).get("paired", [])
    stats = [(p, paired_stats(rows, p["value"], p["key"], p["pairs"])) for p in paired]
    plotted = [(p, got) for p, st in stats if (got := [d for d in st if "interval" in d])]
    if plotted:
        png = path / f"{name}-paired.png"
        if draw:
            _paired_plot(plotted, png, figure_title)
            written.append(png)
        md += [f"![paired differences]({png.name})", ""]
    for p, st in stats:
        md += [
            f"**{p['value']}: paired differences within a seed** (a − b in each seed, mean ± standard error "
            "over the seeds)",
            "",
            _paired_markdown(st, p["value"], p["key"]),
        ]
    md += _prompt_sets(path, written)
    out = path / f"{name}.md"
    write_text_atomic(out, "\n".join(md))
    written.append(out)
    return written


def _finished_line(rows: list[dict], meta: dict, spec: dict) -> str:
    """"N of M jobs finished" (M: the sweep's or the definition's jobs) and what its ± means."""
    jobs = len({r["job"] for r in rows})
    expected = len(meta.get("jobs", [])) or jobs
    if spec.get("prompts"):
        spread = "mean ± standard error over the images of the prompt set"
    elif len({r.get("seed") for r in rows}) > 1:
        spread = "mean ± standard error over repeated jobs (seeds)"
    else:  # aggregate keeps a single job's own <value>_se: the error of its samples, not over seeds
        spread = "one seed: each value ± the job's own standard error over its samples, where it has one"
    return f"{jobs} of {expected} jobs finished; {spread}."


def _prompt_sets(path: Path, written: list[Path]) -> list[str]:
    """Prompt-set jobs: one gallery of their images, and runs computed in shards merged (their lines
    of the markdown report; the files written are appended to ``written``)."""
    from glass.shards import merge_shards, sweep_gallery

    md = []
    page = sweep_gallery(path)
    if page is not None:
        md += ["", f"Images of every method, prompt by prompt: [{page.name}]({page.name})", ""]
        written.append(page)
    for merged in merge_shards(path):
        meta = json.loads((merged / "metrics.json").read_text())
        what = f"{meta['prompts']} of the file's {meta['file_prompts']} prompts"
        md += ["", f"**prompt-set shards merged in `{merged.relative_to(path)}`** ({what})", "",
               _merged_table(meta["rows"])]  # fmt: skip
        written.append(merged)
    return md


def _merged_table(rows: list[dict]) -> str:
    """A merged prompt-set run's rows: every reward with its standard error, per method, and each
    method's paired difference from the first (``<reward>_vs_first``; none in the first row)."""
    names = list(dict.fromkeys(k for r in rows for k in r if f"{k}_se" in r))
    lines = ["| method | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for r in rows:
        cells = (_fmt(r[n], r[f"{n}_se"]) if n in r else "—" for n in names)
        lines.append(f"| {r['sampler']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
