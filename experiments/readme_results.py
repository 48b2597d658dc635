"""The README's result tables, generated from the committed result files, never typed.

A generated block in README.md sits between two markers::

    <!-- results: experiments/results/NAME.md table=1 -->     the file's first markdown table
    ...                                                       (``table=1 caption``: and the paragraph
    <!-- /results -->                                         after it: sizes, seeds, floors)

    <!-- results: paper-vs-ours -->                           the reproduction table (below)
    <!-- results: reproduce-times -->                         each reproduction's jobs and their wall time
    <!-- results: make-results-time -->                       make results' time, step by step
    ...
    <!-- /results -->

``python -m experiments.readme_results`` rewrites every block from the result files;
``--check`` only compares and exits 1 naming the first stale block (tests/test_results.py runs it, so
a README table that disagrees with its result file fails the suite). ``make results`` regenerates the
result files first.

The paper-vs-ours table takes the paper's numbers from each definition's ``paper:`` text
(``experiments/reproduce/NAME.yaml``) and ours from the committed ``summary.csv`` of its small-scale run
(and, for Tables 1, 4 and 5, of its ``--scale large`` run where one is committed, in a row of its own):
mean ± standard error over seeds (over the outputs for a single seed), and for every ordering the paper
states a verdict on the difference between the two methods within each seed (every method of a seed
starts from the same noise: Tables 1, 4 and 5 and Fig. 7 share the seed's per-sample noise streams,
Fig. 2 the seed's noised images, points and ground truth), which removes the seed-to-seed variation
the methods share: *confirmed* (same order, the 95 % confidence interval of the mean difference,
Student's t with ``glass.report.t_critical``, excludes 0), *contradicted* (opposite order, excludes 0),
*not resolved* (it contains 0; the interval is given, so the reader sees how large a gap either way
the data still allows, and the seeds a paired t test would need for 80 % power if the true difference
were the measured one, ``glass.report.seeds_for_power``: a planning number, not a result) or *no
standard error* (one seed). For the tables the pairs are those the definition lists under
``report.paired``, so the README and the report compare the same methods.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
MARK = re.compile(r"<!-- results: (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- /results -->", re.S)


def summary_path(name: str, scale: str = "small") -> Path:
    """Where ``make results`` commits the summary of ``glass reproduce NAME --scale SCALE``."""
    base = RESULTS / "reproduce" / name
    return (base if scale == "small" else base / scale) / "summary.csv"


def summary(name: str, scale: str = "small") -> list[dict]:
    """The committed summary rows of ``glass reproduce NAME`` (small scale unless ``scale``), as the
    report reads them: numbers as numbers, and ``kernel`` / ``steps`` parsed from the sampler label."""
    from glass.report import read_summary

    return read_summary(summary_path(name, scale))


def stat(rows: list[dict], value: str, **where) -> tuple[float, float, int]:
    """(mean, standard error, count) of ``value`` over the jobs (seeds) of the rows matching ``where``
    (a single job keeps its own ``<value>_se``): :func:`glass.report.aggregate`'s numbers."""
    from glass.report import aggregate

    picked = [r for r in rows if all(str(r.get(k)) == str(v) for k, v in where.items())]
    got = aggregate(picked, [], value).get(())
    if got is None:
        raise KeyError(f"no {value} where {where}")
    return got


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"


def pm(s: tuple[float, float, int], digits: int = 3) -> str:
    mean, se, _ = s
    return fmt(mean, digits) + (f" ± {se:.2g}" if math.isfinite(se) else "")


def paired_verdict(d: tuple, claim: str, higher_is_better: bool = True) -> str:
    """The paper's claim "a better than b" against the paired difference a − b over seeds: resolved
    when its 95 % t interval excludes 0."""
    from glass.report import beyond, interval, interval_text, seeds_needed

    mean, se, n = d
    order = "same order" if (mean > 0) == higher_is_better else "opposite order"
    if not math.isfinite(se):
        return f"{claim}: {order}, no standard error (one seed)"
    what = f"paired difference {fmt(mean)} ± {se:.2g} over {n} seeds"
    if not beyond(mean, se, n):  # the interval bounds the gap the data leaves possible either way
        need = seeds_needed(mean, se, n)
        need = f"; {need} seeds for 80 % power at this difference" if need else ""
        ends = interval_text(*interval(mean, se, n), se)
        return f"{claim}: not resolved ({order}, {what}; 95 % interval {ends}{need})"
    return f"{claim}: {'confirmed' if order == 'same order' else '**contradicted**'} ({what})"


def seeds_text(stats: dict, label: dict | None = None) -> str:
    """``16 seeds``, or where methods ran different seed counts (a variant's own sweep: more seeds for
    the pair a comparison needs) the most common count and the others by method: ``16 seeds (64 for
    BoN-SDE, BoN-GLASS)``. ``stats`` maps a method to its (mean, se, seeds)."""
    label = label or {}
    counts = [int(x[2]) for x in stats.values()]
    common = max(dict.fromkeys(counts), key=counts.count)  # the most common; the first on a tie
    others: dict[int, list[str]] = {}
    for k, x in stats.items():
        if int(x[2]) != common:
            others.setdefault(int(x[2]), []).append(label.get(k, k))
    plural = "seed" if common == 1 else "seeds"
    extra = "; ".join(f"{n} for {', '.join(ks)}" for n, ks in others.items())
    return f"{common} {plural}" + (f" ({extra})" if extra else "")


def paper_text(name: str) -> str:
    from glass.definitions import load

    return " ".join(load(name)["paper"].split())


def paired_claims(name: str, rows: list[dict], label: dict | None = None):
    """A verdict for every pair the definition's ``report.paired`` lists, in its order: the paper's
    claim "a better than b" against the per-seed difference a − b (the same pairs as the report's
    paired table; better is lower for the distances of ``glass.report.LOWER_IS_BETTER``); ``label``
    renames methods for the README."""
    from glass.definitions import load
    from glass.report import LOWER_IS_BETTER, paired_difference

    label, out = label or {}, []
    for p in load(name)["report"]["paired"]:
        higher = p["value"] not in LOWER_IS_BETTER
        for a, b in p["pairs"]:
            claim = f"{label.get(a, a)} {'above' if higher else 'below'} {label.get(b, b)}"
            out.append(paired_verdict(paired_difference(rows, p["value"], a, b, p["key"]), claim, higher))
    return out


def glass_vs_sde(rows: list[dict], value: str, m: int, **where) -> str:
    """The paper's "GLASS better than the SDE at M = m" on the per-seed difference of ``value`` between
    the ``glass M=m`` and ``sde M=m`` rows matching ``where`` (a compare job runs both on the same
    inputs and noise; better is lower for the distances of ``glass.report.LOWER_IS_BETTER``)."""
    from glass.report import LOWER_IS_BETTER, paired_difference

    same = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    d = paired_difference(same, value, f"glass M={m}", f"sde M={m}", "sampler")
    return paired_verdict(d, f"M = {m}", value not in LOWER_IS_BETTER)


def fig2_posterior() -> str:
    rows, ms = summary("fig2-posterior"), (2, 4, 8, 16)
    t02 = {"task.t": 0.2}
    at = {s: [stat(rows, "fid", sampler=f"{s} M={m}", **t02) for m in ms] for s in ("sde", "glass")}
    agree = {s: stat(rows, "label_agreement", sampler=f"{s} M=2", **t02) for s in ("sde", "glass")}

    def below(t: float, m: int) -> str:  # both samplers start from the seed's noised images
        return glass_vs_sde(rows, "fid", m, **{"task.t": t})

    other = [f"t = {t:g}: GLASS below SDE at {below(t, 2)}; {below(t, 16)}"
             for t in sorted({r["task.t"] for r in rows} - {0.2})]  # fmt: skip
    seeds = int(at["sde"][0][2])
    return (f"posterior FID at t = 0.2, M = 2 / 4 / 8 / 16: SDE {' / '.join(fmt(s[0]) for s in at['sde'])}, "
            f"GLASS {' / '.join(fmt(s[0]) for s in at['glass'])} ({seeds} seeds × "
            f"{int(rows[0]['n_points'])} images); "
            f"label agreement at M = 2: SDE {agree['sde'][0]:.2f}, GLASS {agree['glass'][0]:.2f}. "
            f"GLASS below SDE at t = 0.2: {'; '.join(below(0.2, m) for m in ms)}. "
            + ". ".join(other))  # fmt: skip


def fig2_value() -> str:
    rows, ms = summary("fig2-value"), (2, 4, 8, 16)
    cells = []
    for truth in dict.fromkeys(r["variant"] for r in rows):
        r = {s: [stat(rows, "pearson", sampler=f"{s} M={m}", variant=truth) for m in ms]
             for s in ("sde", "glass")}  # fmt: skip
        # SDE and GLASS estimate the same points against the same truth within a seed
        claims = [glass_vs_sde(rows, "pearson", m, variant=truth) for m in ms]
        sde, glass = (" / ".join(f"{v[0]:.2f}" for v in r[k]) for k in ("sde", "glass"))
        cells.append(f"{truth}: SDE {sde}, GLASS {glass}; GLASS above SDE at {'; '.join(claims)}")
    seeds = int(stat(rows, "pearson", sampler="glass M=2", variant=rows[0]["variant"])[2])
    return (f"Pearson at M = 2 / 4 / 8 / 16 ({seeds} seeds × {int(rows[0]['n_points'])} points), "
            + ". ".join(cells))  # fmt: skip


def table4(scale: str = "small") -> str:
    rows = summary("table4-sampling", scale)
    names = {"ode": "ODE", "sde": "SDE", "glass": "GLASS(ρ_DDPM)", "glass(rho=0.4)": "GLASS(0.4)"}
    s = {k: stat(rows, "fid", sampler=f"{k} M=10") for k in names}

    claims = paired_claims("table4-sampling", rows, label=names)  # the paper's order
    seeds = f"{seeds_text(s, names)} × " if max(x[2] for x in s.values()) > 1 else ""
    return (f"FID ({seeds}{int(rows[0]['fid_n_samples'])} samples): "
            + ", ".join(f"{n} {pm(s[k])}" for k, n in names.items()) + ". " + "; ".join(claims))


def table4_inception() -> str:
    """Seed 0 of Table 4 in both feature spaces: the values and the order each gives (one seed, so the
    orders, not intervals, are what can be compared)."""
    rows = summary("table4-inception")
    names = {"ode": "ODE", "sde": "SDE", "glass": "GLASS(ρ_DDPM)", "glass(rho=0.4)": "GLASS(0.4)"}
    by = {r["sampler"]: r for r in rows}

    def cell(value: str) -> tuple[str, list[str]]:
        v = {n: by[f"{k} M=10"][value] for k, n in names.items()}
        order = sorted(v, key=v.get)
        return ", ".join(f"{n} {fmt(x)}" for n, x in v.items()), order

    inception, inc_order = cell("fid_inception")
    classifier, cls_order = cell("fid")
    agree = "the same order" if inc_order == cls_order else "a different order"
    return (f"seed 0, {int(rows[0]['fid_n_samples'])} samples per sampler. Inception FID: {inception} "
            f"(best first: {' < '.join(inc_order)}); classifier FID of the same samples: {classifier} "
            f"({' < '.join(cls_order)}): {agree}")


def fig7() -> str:
    from glass.definitions import load
    from glass.report import beyond, paired_difference

    rows = summary("fig7-rho")
    v = {name: stat(rows, "energy", variant=name) for name in dict.fromkeys(r["variant"] for r in rows)}
    floor = stat(rows, "energy_floor", variant="SDE")[0]
    glass = {k: x for k, x in v.items() if k not in ("SDE", "ODE")}
    best = min(glass, key=lambda k: glass[k][0])
    # fig7-rho's report.paired: every GLASS variant vs SDE (the paper's claim; rho=0.4 first), then
    # rho=0.4 vs ODE (a difference only: the paper's Fig. 7 has no ODE to claim about)
    against = [a for p in load("fig7-rho")["report"]["paired"] for a, b in p["pairs"] if b == "SDE"]
    d = {a: paired_difference(rows, "energy", a, "SDE", "variant") for a in against}
    confirmed = sum(mean < 0 and beyond(mean, se, n) for mean, se, n in d.values())
    sde = [paired_verdict(x, a, higher_is_better=False) for a, x in d.items()]
    ode, ode_se, n = paired_difference(rows, "energy", "rho=0.4", "ODE", "variant")
    if ode > 0 and beyond(ode, ode_se, n):
        ode_text = ("On the oracle at 5 × 2 Euler steps the discretisation error dominates, so the "
                    f"deterministic ODE is best (below GLASS(0.4) by {fmt(ode)} ± {ode_se:.2g}, paired over "
                    f"{n} seeds; the paper's Fig. 7 has no ODE)")  # fmt: skip
    else:
        ode_text = (f"GLASS(0.4) − ODE: {fmt(ode)} ± {ode_se:.2g}, paired over {n} seeds (the paper's Fig. 7 "
                    "has no ODE)")  # fmt: skip
    if best == "rho=0.4":
        best_text = "ρ = 0.4 lowest in mean"
    else:
        d = paired_difference(rows, "energy", "rho=0.4", best, "variant")
        best_text = paired_verdict(d, f"ρ = 0.4 below {best} (the lowest mean)", higher_is_better=False)
    return (f"energy distance (floor {floor:.3f}, {int(v['SDE'][2])} seeds): SDE {pm(v['SDE'])}, best GLASS "
            f"{best} {pm(v[best])}, ρ = 0.4 {pm(v['rho=0.4'])}, ρ = 1 {pm(v['rho=1.0'])}, ODE "
            f"{pm(v['ODE'])}. Every GLASS ρ below the SDE: confirmed for {confirmed} of {len(sde)} "
            f"({'; '.join(sde)}). {best_text}. {ode_text}")  # fmt: skip


def table1(scale: str = "small") -> str:
    rows = summary("table1-fks", scale)
    names = ["flow (ODE, 1 sample)", "BoN-ODE", "BoN-SDE", "BoN-GLASS (ddpm)", "FKS-SDE", "FKS-GLASS (ddpm)",
             "FKS-GLASS (rho=0.4)"]  # fmt: skip
    v = {k: stat(rows, "reward", variant=k) for k in names}
    short = {"flow (ODE, 1 sample)": "flow", "BoN-GLASS (ddpm)": "BoN-GLASS",
             "FKS-GLASS (ddpm)": "FKS-GLASS(ρ_DDPM)", "FKS-GLASS (rho=0.4)": "FKS-GLASS(0.4)"}  # fmt: skip

    claims = paired_claims("table1-fks", rows, label=short)
    return (f"log p(class 0) ({seeds_text(v, short)} × {int(rows[0]['groups'])} outputs): "
            + ", ".join(f"{short.get(k, k)} {pm(x)}" for k, x in v.items()) + ". " + "; ".join(claims))


def table5(scale: str = "small") -> str:
    rows = summary("table5-guidance", scale)
    names = list(dict.fromkeys(r["variant"] for r in rows))
    v = {k: stat(rows, "reward", variant=k) for k in names}
    acc = {k: stat(rows, "target_accuracy", variant=k)[0] for k in names}
    guided = [k for k in names if "guidance" in k]
    claims = paired_claims("table5-guidance", rows)
    return (f"log p(class 0) ({seeds_text(v)} × {int(rows[0]['groups'])} outputs): "
            + ", ".join(f"{k} {pm(x)}" for k, x in v.items())
            + f" (target accuracy {' / '.join(f'{acc[k]:.2f}' for k in guided)} with guidance). "
            + "; ".join(claims))  # fmt: skip


ROWS = [
    ("Fig. 2, posterior FID", "fig2-posterior", fig2_posterior),
    ("Fig. 2, value correlation", "fig2-value", fig2_value),
    ("Table 4, 50 NFE", "table4-sampling", table4),
    ("Table 4, Inception FID", "table4-inception", table4_inception),
    ("Fig. 7, ρ", "fig7-rho", fig7),
    ("Table 1, FK steering", "table1-fks", table1),
    ("Table 5, guidance", "table5-guidance", table5),
]


def paper_vs_ours() -> str:
    """One row per experiment at small scale; after it, where ``--scale large`` results are committed
    (``experiments/results/reproduce/NAME/large/``), the same row on those (the strongest checkpoint)."""
    from glass.definitions import load, names

    large = names("large")
    lines = ["| experiment | paper | ours (generated from `experiments/results/reproduce/**/summary.csv`) |",
             "|---|---|---|"]  # fmt: skip
    for title, name, cell in ROWS:
        lines.append(f"| {title} | {paper_text(name)} | {cell()} |")
        if name in large and summary_path(name, "large").is_file():
            model = next(o for o in load(name)["scales"]["large"]["overrides"] if o.startswith("model="))
            title = f"{title}, `--scale large` (`{model.split('=', 1)[1]}`)"
            lines.append(f"| {title} | as above | {cell('large')} |")
    return "\n".join(lines) + "\n"


def _time_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def reproduce_times() -> str:
    """Per committed small-scale reproduction: its jobs, seeds and the wall time its jobs recorded
    (``wall_time_s`` of each job in its summary.csv, summed, and the median job), so no time in the
    README's reproduce table is typed. A whole ``glass reproduce`` takes somewhat longer (the sweep's
    start, the report)."""
    import statistics

    from glass.definitions import names

    lines = ["| NAME | jobs | seeds | its jobs' wall time on 2 CPU cores | median job |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name in names():
        if not summary_path(name).is_file():
            continue
        jobs: dict = {}
        for r in summary(name):
            jobs.setdefault(r["job"], (float(r["wall_time_s"]), r.get("seed")))
        times = [w for w, _ in jobs.values()]
        seeds = len({seed for _, seed in jobs.values()})
        lines.append(f"| `{name}` | {len(jobs)} | {seeds} | {_time_text(sum(times))} | "
                     f"{_time_text(statistics.median(times))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def make_results_time() -> str:
    """How long ``make results`` takes on the CPU, step by step and in all: the small-scale
    reproductions' job wall times (their summary.csv, as in the reproduce-times block) and each
    script's last timed run (``experiments/results/make_results_time.json``, written by
    ``experiments.regenerate``); a step never timed yet is named as such: the total is a lower bound."""

    from experiments.regenerate import SCRIPTS, read_times
    from glass.definitions import names

    steps = [*SCRIPTS, "default_run"]
    timed = {k: v for k, v in read_times().items() if k in steps}  # a step since removed: not counted
    jobs: dict = {}
    for name in names():
        if summary_path(name).is_file():
            for r in summary(name):
                jobs[(name, r["job"])] = float(r["wall_time_s"])
    n = len({name for name, _ in jobs})
    lines = ["| step | time | how it was measured |", "|---|---|---|",
             f"| the {n} small-scale reproductions | {_time_text(sum(jobs.values()))} | "
             "their jobs' wall times (summary.csv, table above) |"]  # fmt: skip
    missing = []
    for name in steps:
        t = timed.get(name)
        if t is None:
            missing.append(f"`{name}`")
            continue
        busy = f", {t['cpu_s'] / t['seconds']:.1f} cores busy on average" if t.get("cpu_s") else ""
        lines.append(f"| `{name}` | {_time_text(t['seconds'])} | `make results` at {t['commit']}, "
                     f"{t['date']}, {t['cores']} cores, load {t['load']:.1f} as it started{busy} "
                     "|")  # fmt: skip
    total = sum(jobs.values()) + sum(t["seconds"] for t in timed.values())
    text = "\n".join(lines) + "\n\n" + f"In all at least {_time_text(total)} on a CPU" + (
        f", and more: {len(missing)} steps not timed yet ({', '.join(missing)})" if missing else "")
    return text + (". Not counted: each reproduction's start and report, and the `--scale large` runs (a "
                   "GPU's); the steps were timed at different commits and machine loads (above).\n")


def table_of(path: str, k: int = 1, caption: bool = False) -> str:
    """The k-th markdown table of a result file (with ``caption``: and the paragraph that follows it,
    the file's statement of sizes, seeds and floors, so the README never retypes it)."""
    tables, current, after = [], [], {}
    lines = (ROOT / path).read_text().splitlines() + [""]
    for i, line in enumerate(lines):
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
            rest = itertools.dropwhile(lambda x: not x.strip(), lines[i:])
            after[len(tables)] = list(itertools.takewhile(str.strip, rest))
    if len(tables) < k:
        raise KeyError(f"{path} has {len(tables)} tables, not {k}")
    body = "\n".join(tables[k - 1]) + "\n"
    if caption:
        if not after.get(k) or after[k][0].startswith("|"):
            raise KeyError(f"{path}: no paragraph after table {k}")
        body += "\n" + "\n".join(after[k]) + "\n"
    return body


def render(spec: str) -> str:
    """One block: ``paper-vs-ours``, ``reproduce-times``, ``make-results-time`` or ``PATH [table=K]
    [caption]``."""
    if spec == "paper-vs-ours":
        return paper_vs_ours()
    if spec == "reproduce-times":
        return reproduce_times()
    if spec == "make-results-time":
        return make_results_time()
    path, *opts = spec.split()
    k = next((int(o.split("=", 1)[1]) for o in opts if o.startswith("table=")), 1)
    unknown = [o for o in opts if not o.startswith("table=") and o != "caption"]
    if unknown:
        raise KeyError(f"results block {spec!r}: unknown option {unknown[0]!r} (table=K, caption)")
    return table_of(path, k, caption="caption" in opts)


def update(text: str) -> tuple[str, list[str]]:
    """(the README with every block rendered, the specs of the blocks that changed)."""
    stale = []

    def sub(m: re.Match) -> str:
        body = render(m.group("spec"))
        if body != m.group("body"):
            stale.append(m.group("spec"))
        return f"<!-- results: {m.group('spec')} -->\n{body}<!-- /results -->"

    return MARK.sub(sub, text), stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    new, stale = update(readme.read_text())
    if args.check:
        if stale:
            print(f"README.md is stale: {', '.join(stale)} (python -m experiments.readme_results)",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    readme.write_text(new)
    print(f"README.md: {len(stale)} block(s) rewritten" + (f": {', '.join(stale)}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
