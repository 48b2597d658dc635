"""``make bench-suite``: the test suite's time and memory as CI sees it, written to
benchmarks/results/suite.{json,md} with the machine described (never timed assertions in tests).

Clones the repository's HEAD into a temporary directory, runs ``bash .ci/run`` there (= ``make test``:
install, then pytest), and records the wall time (all of it, and pytest's own from its summary line),
the test count, the largest resident set of any one process (``getrusage``'s children maximum, what GNU
time reports) and the peak of the whole process tree's proportional set size (``/proc/<pid>/smaps_rollup``
summed over the tree every 0.3 s: children such as torchrun ranks and sweep workers included, shared
pages counted once). The clone's editable install is pointed back at this checkout afterwards.
A run with a failing test is not a measurement: it writes outputs/suite-failed.{json,md,log} and leaves
the committed suite.{json,md} (which the README quotes) as they were.

    python benchmarks/suite.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    kids: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(p))
    found, todo = [], [root]
    while todo:
        q = todo.pop()
        found.append(q)
        todo += kids.get(q, [])
    return found


def pss_mb(pids: list[int]) -> float:
    total = 0
    for q in pids:
        try:
            with open(f"/proc/{q}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, ValueError):
            pass  # exited meanwhile, or not ours to read
    return total / 1024


def measure(clone: Path) -> dict:
    log = clone / "suite.log"
    peak = {"mb": 0.0, "procs": 0}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", ".ci/run"], cwd=clone, stdout=out, stderr=subprocess.STDOUT)

        def watch():
            while proc.poll() is None:
                pids = tree(proc.pid)
                mb = pss_mb(pids)
                if mb > peak["mb"]:
                    peak.update(mb=mb, procs=len(pids))
                time.sleep(0.3)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        rc = proc.wait()
        watcher.join()
    wall = time.perf_counter() - start
    text = log.read_text()
    summary = re.findall(r"^=*\s*(.*\b(?:passed|failed)\b.* in ([0-9.]+)s.*?)\s*=*$", text, re.M)
    line, pytest_s = summary[-1] if summary else ("(no pytest summary)", "nan")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", line)}
    slowest = [{"s": float(s), "phase": ph, "test": name}
               for s, ph, name in re.findall(r"^([0-9.]+)s (call|setup|teardown)\s+(.+?)\s*$", text, re.M)]
    return {
        "exit_code": rc,
        "summary": line.strip("= "),
        "tests": counts,
        "wall_s": round(wall, 1),
        "pytest_s": float(pytest_s),
        "max_rss_one_process_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
        "peak_tree_pss_gb": round(peak["mb"] / 1024, 2),
        "processes_at_peak": peak["procs"],
        "slowest": slowest,  # pytest's --durations list (make test asks for the 15 slowest)
        "failed": re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M),  # pytest's short summary
    }


def machine() -> dict:
    load = os.getloadavg()[0]
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_1min_before": round(load, 2),
        "python": sys.version.split()[0],
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),  # fmt: skip
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="glass-suite-") as tmp:
        clone = Path(tmp) / "glass-flows"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        try:
            result = measure(clone)
            if result["exit_code"]:  # the clone goes with the temporary directory: keep its log
                kept = ROOT / "outputs" / "suite-failed.log"
                kept.parent.mkdir(exist_ok=True)
                kept.write_text((clone / "suite.log").read_text())
                result["log"] = str(kept.relative_to(ROOT))
        finally:  # the clone's `make install` made it the editable install: point it back here
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(ROOT), "--no-deps"],
                           check=False, capture_output=True)  # fmt: skip
    data = {"machine": info, **result}
    # a failed run is not a measurement to quote: it goes to outputs/, the committed one stays
    out, stem = (Path(args.out), "suite") if result["exit_code"] == 0 else (ROOT / "outputs", "suite-failed")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    md = [
        "# Test suite: time and memory (`bash .ci/run` = `make test` on a clean clone)",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| what | value |",
        "|---|---|",
        f"| pytest summary | {result['summary']} |",
        f"| wall time, install included | {result['wall_s'] / 60:.1f} min |",
        f"| pytest's own time | {result['pytest_s'] / 60:.1f} min |",
        f"| largest resident set of one process | {result['max_rss_one_process_gb']} GB |",
        f"| peak of the whole process tree (PSS) | {result['peak_tree_pss_gb']} GB "
        f"({result['processes_at_peak']} processes) |",
        "",
    ]
    if result["failed"] or result["exit_code"]:
        md += [f"**Failed** (exit code {result['exit_code']}; the log: `{result.get('log')}`):", ""]
        md += [f"- `{name}`" for name in result["failed"]] + [""]
    if result["slowest"]:
        md += ["Slowest tests (pytest `--durations`):", "", "| seconds | phase | test |", "|---|---|---|"]
        md += [f"| {d['s']:.1f} | {d['phase']} | `{d['test']}` |" for d in result["slowest"]]
        md += [""]
    (out / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))
    if result["exit_code"]:
        print(f"failed: written to {out / stem}.{{json,md}}; {args.out}/suite.{{json,md}} left as they were")
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
