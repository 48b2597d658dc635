"""More seeds for some methods of a committed reproduction, carried across sessions on main.

A ranking that the committed seeds leave unresolved gets more seeds for the two methods it compares,
with the count fixed (and written in ``experiments/pending/README.md``) before any new seed is run.
The work machines keep only what is committed, and such a run outlasts a session on 2 CPU cores, so
every finished job's summary row is saved to ``experiments/pending/NAME-SCALE.csv`` and committed;
a later session skips the jobs whose rows are there. The rows are not read until every job is in.

    python -m experiments.extend run table1-fks large 16 64 BoN-SDE "BoN-GLASS (ddpm)"
    python -m experiments.extend save table1-fks large      # finished rows -> experiments/pending/
    python -m experiments.extend merge table1-fks large 16 64 BoN-SDE "BoN-GLASS (ddpm)"
    python -m experiments.extend run table4-sampling large 32 84   # no variants: every job's sampler

``run`` also reruns seed 0 of each method (already committed): ``merge`` requires it to reproduce
the committed row (the machine, the libraries and the code still give the same numbers), then adds
the new rows to the committed ``summary.csv`` with the job names of the full sweep. Two copies of
``run`` (OMP_NUM_THREADS=1 each) share the jobs through the sweep's claims.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from glass.definitions import load
from glass.files import write_csv_atomic
from glass.reproduce import job_overrides

ROOT = Path(__file__).resolve().parents[1]
PENDING = ROOT / "experiments" / "pending"
RESULTS = ROOT / "experiments" / "results" / "reproduce"
RUNS = ROOT / "outputs" / "extend"  # the sweeps that run the new jobs (git-ignored)
OUT_DIR = ".dev/large_cpu"  # the committed large runs' out_dir (their rows' overrides say so)
CHECK_SEED = 0
UNCHECKED = {"job", "wall_time_s", "kernel_time_s"}  # timings differ from run to run
REL_TOL = 1e-5  # float rounding of another process (Table 5's seed 0, rerun a session later: 1.7e-6)


def wanted(name: str, scale: str, first: int, stop: int, methods: list[str]) -> list[tuple[list[str], dict]]:
    """(overrides, labels) of the new jobs: seeds first..stop-1 and CHECK_SEED of the methods (the
    variants named, or every job of a definition without variants)."""
    jobs, labels = job_overrides(load(name), scale, [f"out_dir={OUT_DIR}"])
    first_job, shapes = {}, {}  # variant -> its first job, whose seed is replaced
    for ov, lab in zip(jobs, labels):
        first_job.setdefault(lab.get("variant"), (ov, lab))
        shapes.setdefault(lab.get("variant"), set()).add(" ".join(o for o in ov if not o.startswith("seed=")))
    several = next((v for v, s in shapes.items() if len(s) > 1), False)
    if several is not False:  # a row's identity is its method, seed and kernel: other swept keys collide
        which = f"method {several!r}" if several else "its jobs"
        raise SystemExit(f"{name} --scale {scale} sweeps more than the seed for {which}: extend adds seeds "
                         "to one job per method")  # fmt: skip
    for method in methods:
        if method not in first_job:
            raise SystemExit(f"{name} --scale {scale} has no variant {method!r}")
    out = []
    for method in methods or list(first_job):
        ov, lab = first_job[method]
        for seed in sorted({CHECK_SEED, *range(first, stop)}):
            out.append(([f"seed={seed}" if o.startswith("seed=") else o for o in ov], lab))
    return out


def sweep_dir(name: str, scale: str) -> Path:
    return RUNS / f"{name}-{scale}"


def pending_file(name: str, scale: str) -> Path:
    return PENDING / f"{name}-{scale}.csv"


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run(args) -> None:
    from glass.experiment import prepare_jobs, release
    from glass.sweep import sweep

    saved = {r["overrides"] for r in read_rows(pending_file(args.name, args.scale))}
    todo = [(ov, lab) for ov, lab in wanted(args.name, args.scale, args.first, args.stop, args.methods)
            if " ".join(ov) not in saved]  # fmt: skip
    print(f"{len(todo)} jobs to run ({len(saved)} saved jobs skipped)", flush=True)
    if not todo:
        return
    jobs = prepare_jobs([ov for ov, _ in todo])
    try:
        _, _, failures = sweep(jobs, sweep_dir(args.name, args.scale), labels=[lab for _, lab in todo],
                               announce=print)  # fmt: skip
    finally:
        release(jobs)
    for name, error in failures:  # the sweep goes on past a failed job: say which, and why
        print(f"{name} failed: {error}", flush=True)
    if failures:
        raise SystemExit(1)


def save(args) -> None:
    """Rows of the finished jobs (saved before or in the sweep directory) -> the pending CSV; then
    the check seed's rows, as soon as they are in, against the committed ones."""
    from glass.sweep import collect

    path, where = pending_file(args.name, args.scale), sweep_dir(args.name, args.scale)
    if where.is_dir() and not (where / "sweep.json").is_file():
        raise SystemExit(f"{where} has no sweep.json: its rows would lose their method's name")
    rows = {identity(r): r for r in read_rows(path)}
    for r in collect(where) if where.is_dir() else []:
        rows.setdefault(identity(r), {k: ("" if v is None else str(v)) for k, v in r.items()})
    write_csv(path, list(rows.values()))
    print(f"{path}: {len(rows)} rows, {len({k[:2] for k in rows})} jobs")
    checked = check_rerun(args.name, args.scale, list(rows.values()))
    print(f"seed {CHECK_SEED} rerun: {checked} rows reproduce the committed ones")


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(path, rows)


def identity(row: dict) -> tuple[str, int, str]:
    """A summary row's identity: its method, seed and kernel (a job may compare several kernels)."""
    return row.get("variant", ""), int(row["seed"]), row.get("sampler", "")


def check_rerun(name: str, scale: str, saved: list[dict]) -> int:
    """Each saved row of CHECK_SEED against its committed row: every column but the job name and the
    timings equal (the overrides character for character, numbers to REL_TOL); the number of rows
    compared. The job name's config hash is not compared: a default added to conf/ since (a new
    option whose default keeps the old behaviour) changes every hash; what it would change is in the
    numbers, which are."""
    committed = {identity(r): r for r in read_rows(RESULTS / name / scale / "summary.csv")}
    checked = 0
    for row in (r for r in saved if int(r["seed"]) == CHECK_SEED):
        old = committed.get(identity(row))
        if old is None:
            raise SystemExit(f"{identity(row)}: no committed row of this method, seed and kernel")
        for column in sorted((set(old) | set(row)) - UNCHECKED):
            new, was = row.get(column, ""), old.get(column, "")
            if new != was and not _close(new, was):
                raise SystemExit(f"{identity(row)}: rerun {column} {new!r} != committed {was!r}")
        checked += 1
    return checked


def _filled(row: dict) -> set[str]:
    return {k for k, v in row.items() if v not in ("", None)}


def _close(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=REL_TOL) or (math.isnan(x) and math.isnan(y))


def merge(args) -> None:
    """Check the saved rows (every planned job, the rerun seed, the new jobs' shape), then add the new
    rows to summary.csv in the full sweep's order."""
    spec = load(args.name)
    saved = read_rows(pending_file(args.name, args.scale))
    want = {" ".join(ov) for ov, _ in wanted(args.name, args.scale, args.first, args.stop, args.methods)}
    missing = sorted(want - {r["overrides"] for r in saved})
    if missing:
        raise SystemExit(f"{len(missing)} of {len(want)} jobs have no saved row yet, e.g. {missing[0]}")
    saved = [r for r in saved if r["overrides"] in want]
    checked = check_rerun(args.name, args.scale, saved)
    print(f"seed {CHECK_SEED} rerun: {checked} rows reproduce the committed ones")
    summary = RESULTS / args.name / args.scale / "summary.csv"
    committed = read_rows(summary)
    added = [r for r in saved if int(r["seed"]) != CHECK_SEED]
    _check_shape(committed, added, args.stop)
    order = list(spec["scales"][args.scale].get("variants") or [""])
    rows = sorted(committed + added, key=lambda r: (order.index(r.get("variant", "")), int(r["seed"])))
    index, last = -1, None
    for r in rows:  # the full sweep's job names: its position, then the config hash
        index += (r.get("variant", ""), r["seed"]) != last
        last = (r.get("variant", ""), r["seed"])
        r["job"] = f"{index:03d}-{r['job'].split('-', 1)[1]}"
    write_csv(summary, rows)
    print(f"{summary}: {len(committed)} + {len(added)} rows")
    print(f"now make experiments/reproduce/{args.name}.yaml's {args.scale} seeds 0..{args.stop - 1} (and its "
          "text): tests/test_results.py checks each summary against its definition's jobs")


def _check_shape(committed: list[dict], added: list[dict], stop: int) -> None:
    """No row twice, each new job with the kernels and columns of the method's committed jobs, and each
    extended method's seeds exactly 0..stop-1 (so the job names are the full sweep's)."""
    ids = [identity(r) for r in committed + added]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{next(i for i in ids if ids.count(i) > 1)} is there twice")
    filled = {identity(r)[::2]: _filled(r) for r in committed if int(r["seed"]) == CHECK_SEED}
    seeds = {}
    for r in added:
        method = r.get("variant", "")
        seeds.setdefault(method, set()).add(int(r["seed"]))
        if filled.get(identity(r)[::2]) != _filled(r):
            raise SystemExit(f"{identity(r)}: not a kernel or the columns of the committed {method!r} jobs")
    for method, new in seeds.items():
        have = {int(r["seed"]) for r in committed if r.get("variant", "") == method} | new
        if have != set(range(stop)):
            raise SystemExit(f"{method!r}: seeds would be {sorted(have)}, not 0..{stop - 1}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["run", "save", "merge"])
    ap.add_argument("name")
    ap.add_argument("scale")
    ap.add_argument("first", type=int, nargs="?", default=0)
    ap.add_argument("stop", type=int, nargs="?", default=0)
    ap.add_argument("methods", nargs="*")
    args = ap.parse_args()
    {"run": run, "save": save, "merge": merge}[args.command](args)


if __name__ == "__main__":
    main()
