"""Sweeps under stress: literal paths, damaged records, two copies of one sweep at once, seeds.

Each test here failed on main before the fixes of issue 20 (defects 1-4): a ``${...}`` in a sweep path
was interpolated, a record of the wrong shape counted as finished, two copies ran every job twice,
and seeds 2^32 apart gave the same run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from glass.claims import claim, claim_path
from glass.cli import app
from glass.sweep import check_record

runner = CliRunner()
TINY = ["model=gmm", "sampler=glass", "sampler.steps=2", "task.n=20", "task.points=2", "metric=oracle",
        "metric.floor_repeats=2", "metric.n_projections=8"]  # fmt: skip


def run(*args: str):
    return runner.invoke(app, list(args))


def jobs_in(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.suffix not in (".partial", ".failed"))  # fmt: skip


def summary(sweep: Path) -> list[dict]:
    return list(csv.DictReader(open(sweep / "summary.csv")))


def test_sweep_paths_are_literal(tmp_path, monkeypatch):
    """``${...}`` in --sweep-dir or in out_dir is a directory name, not an interpolation: the jobs land
    beside sweep.json and a rerun finds them."""
    monkeypatch.chdir(tmp_path)
    target = "sweeps/${now:%H-%M-%S}"
    first = run("run", "-m", *TINY, "seed=0,1", "--sweep-dir", target, f"out_dir={tmp_path}")
    assert first.exit_code == 0, first.output
    sweep = tmp_path / target
    assert [p.name for p in (tmp_path / "sweeps").iterdir()] == ["${now:%H-%M-%S}"]
    assert len(jobs_in(sweep)) == 2 and len(summary(sweep)) == 2 and (sweep / "sweep.json").is_file()
    again = run("run", "-m", *TINY, "seed=0,1", "--sweep-dir", target, f"out_dir={tmp_path}")
    assert again.exit_code == 0 and "2 already finished (skipped)" in again.stderr

    # an escaped interpolation in out_dir: the default sweep directory under the literal name
    res = run("run", "-m", *TINY, "seed=0,1", "out_dir=o/\\${x}")
    assert res.exit_code == 0, res.output
    (sweep,) = (tmp_path / "o" / "${x}" / "multirun").iterdir()
    assert len(jobs_in(sweep)) == 2 and len(summary(sweep)) == 2


def test_damaged_records_are_run_again_and_said_so(tmp_path):
    out = tmp_path / "out"
    first = run("run", "-m", *TINY, "seed=0,1,2", f"out_dir={out}")
    assert first.exit_code == 0, first.output
    (sweep,) = out.glob("multirun/*")
    jobs = jobs_in(sweep)
    numbers = [r["energy"] for r in summary(sweep)]
    (jobs[0] / "metrics.json").write_text('{"wrong": "shape"}')  # valid JSON, no rows
    (jobs[1] / "metrics.json").write_text('{"rows": [], "seed": 1, "wall_time_s": 0.1}')  # no rows at all
    (sweep / "sweep.json").write_text("[1, 2]")  # wrong shape
    assert [check_record(j) for j in jobs] == ["metrics.json has no rows", "metrics.json has no rows", None]

    report = run("report", str(sweep))  # the damaged jobs are not finished: reported as missing
    assert report.exit_code == 0, report.output
    assert "1 of 1 jobs finished" in (sweep / "summary.md").read_text()

    res = run("run", "-m", *TINY, "seed=0,1,2", f"out_dir={out}")
    assert res.exit_code == 0, res.output
    assert f"{jobs[0].name}: damaged record (metrics.json has no rows), run again" in res.stderr
    assert f"{jobs[1].name}: damaged record" in res.stderr
    assert "1 already finished (skipped), running 2" in res.stderr
    assert [r["energy"] for r in summary(sweep)] == numbers  # the same numbers, computed again
    assert json.loads((sweep / "sweep.json").read_text())["jobs"][0]["name"] == jobs[0].name
    assert not list(sweep.glob(".*damaged*")) and all(check_record(j) is None for j in jobs_in(sweep))


def test_a_job_claimed_by_a_live_process_is_left_to_it(tmp_path):
    """A job whose claim another process holds is not run (and the sweep says so); once the claim is
    released the next run does it. A claim of a dead process is no claim (flock)."""
    out = tmp_path / "out"
    first = run("run", "-m", *TINY, "seed=0", f"out_dir={out}")
    assert first.exit_code == 0
    (sweep,) = out.glob("multirun/*")
    args = ["run", "-m", *TINY, "seed=0,1,2", f"out_dir={out}", f"--sweep-dir={sweep}"]
    from glass.config import compose, config_hash

    held = config_hash(compose([*TINY, "seed=1", f"out_dir={out}"]))
    with claim(claim_path(sweep, held)) as mine:
        assert mine
        res = run(*args)
        assert res.exit_code == 0, res.output
        assert "1 jobs were running in another copy of this sweep" in res.stderr
        assert sorted(r["seed"] for r in summary(sweep)) == ["0", "2"]
        left = list(sweep.glob(f"*{held}*"))  # not started: at most the launcher's empty .partial, left
        assert all(d.suffix == ".partial" and not any(d.iterdir()) for d in left), left  # to the holder
    res = run(*args)
    assert res.exit_code == 0 and "2 already finished (skipped), running 1" in res.stderr
    assert sorted(r["seed"] for r in summary(sweep)) == ["0", "1", "2"]
    assert not list(sweep.glob("*.partial"))
    assert not (sweep / ".claims").exists()


COPY = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import glass.runner

    log, ready, original = Path(sys.argv[1]), Path(sys.argv[2]), glass.runner.run_job

    def counted(job, run_dir, *args, **kwargs):
        (ready / str(os.getpid())).touch()
        deadline = time.time() + 30  # a peer that never runs a job fails "both copies ran jobs" below
        while len(list(ready.iterdir())) < 2 and time.time() < deadline:  # both copies are running jobs
            time.sleep(0.05)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {run_dir.name}\\n")
        time.sleep(0.5)  # a job that takes a while: the other copy reaches it meanwhile
        return original(job, run_dir, *args, **kwargs)

    glass.runner.run_job = counted
    from glass.cli import main
    sys.argv = ["glass", *sys.argv[3:]]
    main()
    """
)


def test_two_copies_of_one_sweep_share_its_jobs(tmp_path):
    """Two processes run the same sweep at once: every job runs exactly once, both exit 0, neither sees
    the other's finished jobs vanish, and the summary of a last run has every job once."""
    out, log, ready = tmp_path / "out", tmp_path / "log.txt", tmp_path / "ready"
    ready.mkdir()
    script = tmp_path / "sweep_copy.py"
    script.write_text(COPY)
    sweep = tmp_path / "sweep"
    argv = [sys.executable, str(script), str(log), str(ready), "run", "-m", *TINY, "seed=0,1,2,3,4,5",
            f"out_dir={out}", f"--sweep-dir={sweep}"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    outs = [(tmp_path / f"copy{i}.out", tmp_path / f"copy{i}.err") for i in range(2)]
    files = [(open(o, "w"), open(e, "w")) for o, e in outs]
    procs = [subprocess.Popen(argv, env=env, stdout=o, stderr=e) for o, e in files]
    for p, pair in zip(procs, files):  # output goes to files: a copy never blocks on a pipe nobody reads
        p.wait(timeout=400)
        for f in pair:
            f.close()
    results = [(o.read_text(), e.read_text()) for o, e in outs]
    for p, (_, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr and "Error" not in stderr
    runs = log.read_text().split()
    pids, names = runs[0::2], runs[1::2]
    assert len(set(pids)) == 2, f"both copies ran jobs: {results}"
    assert sorted(names) == sorted(set(names)) and len(names) == 6, "every job ran exactly once"
    assert len(jobs_in(sweep)) == 6 and not list(sweep.glob("*.partial")) and not list(sweep.glob("*.failed"))
    assert all(check_record(j) is None for j in jobs_in(sweep))
    assert any("were running in another copy" in stderr for _, stderr in results)
    last = run("run", "-m", *TINY, "seed=0,1,2,3,4,5", f"out_dir={out}", f"--sweep-dir={sweep}")
    assert last.exit_code == 0 and "6 already finished (skipped)" in last.stderr
    assert sorted(int(r["seed"]) for r in summary(sweep)) == [0, 1, 2, 3, 4, 5]


def test_a_copy_starting_while_another_writes_sweep_json_joins_it(tmp_path):
    """The moment between one copy making the sweep directory and renaming sweep.json into it: the
    directory holds only that copy's temporary file and claims. A second copy starting then must join
    the sweep, not refuse the directory as someone else's (a race CI hit)."""
    sweep = tmp_path / "sweep"
    (sweep / ".claims").mkdir(parents=True)
    (sweep / f".sweep.json.{os.getpid() + 1}.tmp").write_text("{")
    res = run("run", "-m", *TINY, "seed=0,1", f"out_dir={tmp_path / 'out'}", f"--sweep-dir={sweep}")
    assert res.exit_code == 0, res.output
    assert len(jobs_in(sweep)) == 2 and (sweep / "sweep.json").is_file()
    (sweep / "notes.txt").write_text("mine")  # anything else still makes a directory someone else's
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    res = run("run", "-m", *TINY, "seed=0,1", f"out_dir={tmp_path / 'out'}", f"--sweep-dir={other}")
    assert res.exit_code == 2 and "is not empty and is not a sweep directory" in res.stderr
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_seeds_2_to_the_32_apart_are_refused_not_repeated(tmp_path):
    res = run("run", "-m", *TINY, "seed=0,4294967296", f"out_dir={tmp_path}")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "seed must be an integer in [0, 4294967295]" in res.stderr and not (tmp_path / "multirun").exists()
    res = run("run", *TINY, "seed=4294967295", f"out_dir={tmp_path}")  # the largest seed runs
    assert res.exit_code == 0, res.output


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def test_joblib_workers_die_with_a_killed_sweep(tmp_path):
    """SIGKILL of `glass` with the joblib launcher: its worker processes exit within seconds instead of
    running the rest of the sweep, nothing they leave looks finished, and a rerun completes it."""
    import signal
    import time

    args = [sys.executable, "-m", "glass.cli", "run", "-m", "model=gmm64", "sampler=glass",
            "sampler.steps=40,41,42,43", "task.n=500", f"out_dir={tmp_path}", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, workers = time.time() + 180, []
    while time.time() < deadline and not workers:
        if list(tmp_path.glob("multirun/*/*.partial")):  # a job runs; the other worker may still be idle
            ps = ["ps", "--ppid", str(proc.pid), "-o", "pid=,args="]
            children = subprocess.run(ps, capture_output=True, text=True).stdout.splitlines()
            workers = [int(line.split()[0]) for line in children if "loky" in line.lower()]
        time.sleep(0.05)
    assert workers, proc.communicate()[1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30  # a loaded machine: the watchdog and the reaper poll every 0.5 s
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(alive(p) for p in workers), "worker processes outlived the killed sweep"
    (sweep,) = tmp_path.glob("multirun/*")
    assert all(check_record(j) is None for j in jobs_in(sweep))
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr
    assert len(jobs_in(sweep)) == 4 and len(summary(sweep)) == 4


def test_run_time_failures_exit_1_and_interrupts_say_what_is_kept(tmp_path, monkeypatch):
    """Exit 2 is bad input only: a sweep whose job fails while running exits 1. Ctrl-C says what is
    kept: finished jobs of a sweep, the .failed directory of a single run."""
    import glass.runner

    original = glass.runner._compute

    def failing(job, partial, progress):
        if int(job.cfg.seed) == 1:
            raise RuntimeError("boom")
        if int(job.cfg.seed) == 7:
            raise KeyboardInterrupt
        return original(job, partial, progress)

    monkeypatch.setattr(glass.runner, "_compute", failing)
    res = run("run", "-m", *TINY, "seed=0,1", f"out_dir={tmp_path}")
    assert res.exit_code == 1 and res.stderr.splitlines()[-1].startswith("error: 1 of 2 jobs failed")
    assert "RuntimeError: boom" in res.stderr and ".failed/error.txt; run the same sweep again" in res.stderr
    (sweep,) = tmp_path.glob("multirun/*")
    assert len(jobs_in(sweep)) == 1 and len(list(sweep.glob("*.failed"))) == 1

    single = run("run", *TINY, "seed=7", f"out_dir={tmp_path / 'single'}")
    assert single.exit_code == 130 and "kept as <run>.failed" in single.stderr
    assert len(list((tmp_path / "single").glob("runs/*/*.failed"))) == 1
    swept = run("run", "-m", *TINY, "seed=0,7", f"out_dir={tmp_path / 'swept'}")
    assert swept.exit_code == 130 and "finished jobs are kept; run the same command to resume" in swept.stderr
    # the summary lists the job finished before Ctrl-C (Hydra's launcher let the interrupt past it)
    (sweep,) = (tmp_path / "swept").glob("multirun/*")
    assert [r["seed"] for r in summary(sweep)] == ["0"] and len(list(sweep.glob("*.failed"))) == 1


def test_report_on_a_full_disk_is_one_line_and_keeps_the_old_report(tmp_path, monkeypatch):
    import errno

    import glass.report

    first = run("run", "-m", *TINY, "seed=0,1", f"out_dir={tmp_path}")
    assert first.exit_code == 0
    (sweep,) = tmp_path.glob("multirun/*")
    before = (sweep / "summary.md").read_bytes()

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path.with_name(f".{path.name}.123.tmp")))

    monkeypatch.setattr(glass.report, "write_text_atomic", full)
    res = run("report", str(sweep))
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.output
    assert "cannot write the report into" in res.stderr and "No space left" in res.stderr
    assert ".tmp" not in res.stderr and (sweep / "summary.md").read_bytes() == before


def test_a_copy_that_loses_the_claim_leaves_the_holders_partial_alone(tmp_path):
    """The race two copies of a sweep hit in CI: the holder's ``.partial`` stays empty until it writes
    its config, and the other copy's launcher-made leftover is the same path; removing it "if empty"
    made the holder fail with FileNotFoundError. It is removed only once the job is finished."""
    from glass.sweep import _leave

    sweep, key = tmp_path / "sweep", "a" * 12
    partial = sweep / f"001-{key}.partial"
    partial.mkdir(parents=True)
    _leave(partial, sweep, key)
    assert partial.is_dir()  # the holder is (or may be) about to write into it
    done = sweep / f"001-{key}"
    done.mkdir()
    (done / "job.json").write_text(json.dumps({"config_hash": key, "overrides": []}))
    metrics = {"seed": 0, "wall_time_s": 1.0, "rows": [{"sampler": "x"}]}
    (done / "metrics.json").write_text(json.dumps(metrics))
    assert check_record(done) is None  # a finished record
    _leave(partial, sweep, key)
    assert not partial.exists()  # now only a leftover of this copy's launcher


def test_a_job_planned_at_another_position_keeps_its_name(tmp_path):
    """Jobs are named by their position when first planned; reordered values (or a sweep extended with
    --sweep-dir) find a damaged or unfinished job under its earlier name: reported, run again in place,
    no second directory of the same job. A sweep directory's ``merged/`` (prompt-set shards) is not a
    job: ``glass report`` does not call it damaged."""
    sweep = tmp_path / "sweep"
    first = run("run", "-m", *TINY, "seed=0,1", f"out_dir={tmp_path}", f"--sweep-dir={sweep}")
    assert first.exit_code == 0, first.output
    late = [j for j in jobs_in(sweep) if j.name.startswith("001-")][0]
    (late / "metrics.json").unlink()  # seed 1's record damaged
    (sweep / "merged" / "run").mkdir(parents=True)
    res = run("run", "-m", *TINY, "seed=1,0", f"out_dir={tmp_path}", f"--sweep-dir={sweep}")
    assert res.exit_code == 0, res.output
    assert f"{late.name}: damaged record (no metrics.json), run again" in res.stderr
    assert [d.name for d in sweep.glob(f"*{late.name[4:]}*")] == [late.name]  # not 000-<same hash> too
    assert len(jobs_in(sweep)) == 3 and check_record(late) is None and not list(sweep.glob("*.partial"))
    assert [json.loads((sweep / "sweep.json").read_text())["jobs"][0]["name"]] == [late.name]
    report = run("report", str(sweep))
    assert report.exit_code == 0 and "merged" not in report.stderr and "damaged" not in report.stderr


def test_a_narrower_sweep_that_finishes_nothing_leaves_no_summary_of_other_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    first = run("run", "-m", *TINY, "seed=0,1", f"out_dir={tmp_path}", f"--sweep-dir={sweep}")
    assert first.exit_code == 0 and len(summary(sweep)) == 2 and (sweep / "summary.md").is_file()
    from glass.config import compose, config_hash

    held = config_hash(compose([*TINY, "seed=2", f"out_dir={tmp_path}"]))
    with claim(claim_path(sweep, held)) as mine:  # another copy runs seed 2: nothing finishes here
        assert mine
        res = run("run", "-m", *TINY, "seed=2", f"out_dir={tmp_path}", f"--sweep-dir={sweep}")
    assert res.exit_code == 0, res.output
    assert not list(sweep.glob("summary*")), list(sweep.glob("summary*"))  # csv, jsonl, md (and png)
    assert len(jobs_in(sweep)) == 2  # the finished jobs of the wider sweep stay on disk


def test_a_sweep_without_a_known_metric_or_varying_m_still_reports(tmp_path):
    """``metric=none``: the sweep finishes with its summary (it exited 2, "no known metric", after
    every job had run); a sweep over t at one M draws the metric against t (it drew nothing)."""
    plain = ["model=gmm", "sampler=glass", "sampler.steps=2", "task.n=20", "task.points=2", "metric=none"]
    res = run("run", "-m", *plain, "seed=0,1", f"out_dir={tmp_path}", f"--sweep-dir={tmp_path / 'a'}")
    assert res.exit_code == 0, res.output
    assert "2 of 2 jobs finished" in (tmp_path / "a" / "summary.md").read_text()
    res = run("run", "-m", *TINY, "task.t=0.2,0.5", f"out_dir={tmp_path}", f"--sweep-dir={tmp_path / 'b'}")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "summary.png").is_file()
    assert "task.t=0.5" in (tmp_path / "b" / "summary.md").read_text()


def test_a_generic_report_reads_a_setting_not_the_metric_of_the_same_name():
    """An override named like a metric column (``reward=ink`` beside the ``reward`` metric) is stored
    as ``reward_cfg``: held constant it is no configuration of its own (each row became one)."""
    from glass.report import _generic, with_kernel_columns

    rows = with_kernel_columns([
        {"job": f"{m}{s}", "sampler": f"GLASS M={m}", "reward": 0.1 * m + 0.01 * s, "reward_cfg": "ink",
         "overrides": f"reward=ink sampler.steps={m} seed={s}", "seed": s}
        for m in (2, 4) for s in (0, 1)
    ])  # fmt: skip
    spec = _generic(rows)
    assert spec["report"]["tables"][0]["index"] == ["kernel"]
    assert spec["report"]["plots"][0]["facet"] is None


def test_fresh_beside_the_working_directory(tmp_path, monkeypatch):
    """``--sweep-dir . --fresh``: a new directory beside this one, named after it (it was a ValueError
    traceback, "PosixPath('.') has an empty name")."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    res = run("run", "-m", *TINY, "seed=0", f"out_dir={tmp_path}", "--sweep-dir", ".", "--fresh")
    assert res.exit_code == 0, res.output
    (made,) = [d for d in tmp_path.iterdir() if d.name.startswith("work-")]
    assert len(summary(made)) == 1 and not list((tmp_path / "work").iterdir())


def test_of_several_directories_of_one_job_the_one_with_its_records_names_it(tmp_path):
    """An empty .partial (a copy that lost the claim) beside a .failed holding prompt-set records: the
    job goes on under the name whose records it resumes (the first in sorted order was taken)."""
    from glass.sweep import _earlier_names

    h, other = "0123456789ab", "ba9876543210"
    (tmp_path / f"000-{h}.partial").mkdir()
    (tmp_path / f"003-{h}.failed" / "prompts").mkdir(parents=True)
    (tmp_path / f"001-{other}.partial").mkdir()
    (tmp_path / f"004-{other}").mkdir()
    (tmp_path / f"004-{other}" / "job.json").write_text("{}")
    (tmp_path / "merged").mkdir()
    assert _earlier_names(tmp_path) == {h: f"003-{h}", other: f"004-{other}"}


def test_a_job_computed_with_a_checkpoint_since_retrained_in_place_is_run_again(tmp_path):
    """The config hash sees a checkpoint's path, not its weights: after `glass train flow` re-exports a
    file in place, a sweep skipped its jobs as finished and mixed old and new weights' results. job.json
    records the manifests' sha256; a job finished under other weights is run again (and said so),
    one under the same weights is still skipped."""
    import shutil

    from glass.models.mnist import ASSETS

    flow = tmp_path / "flow.safetensors"

    def ship(name):  # "retrain" flow.safetensors in place: another checkpoint's weights and manifest
        for suffix in (".safetensors", ".json"):
            shutil.copy2(ASSETS / f"{name}{suffix}", flow.with_suffix(suffix))

    ship("mnist_flow")
    args = ["run", "-m", "model=mnist", f"model.path={flow}", "task=generate", "task.n=2", "sampler=ode",
            "sampler.steps=1", "metric=none", "seed=0,1", f"out_dir={tmp_path}", "--sweep-dir",
            str(tmp_path / "sweep")]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    recorded = json.loads((jobs_in(tmp_path / "sweep")[0] / "job.json").read_text())["weights"]
    assert recorded[str(flow)] == json.loads(flow.with_suffix(".json").read_text())["sha256"]
    assert sorted(Path(k).name for k in recorded) == ["flow.safetensors", "mnist_classifier.safetensors"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 already finished (skipped)" in again.stderr
    ship("mnist_flow_v1")
    third = runner.invoke(app, args)
    assert third.exit_code == 0 and "2 already finished" not in third.stderr, third.stderr
    said = "computed with other weights of flow.safetensors (retrained or updated since), run again"
    assert third.stderr.count(said) == 2
    jobs = [p for p in jobs_in(tmp_path / "sweep") if p.suffix != ".stale"]
    assert len(jobs) == 2 and len(list((tmp_path / "sweep").glob("*.stale"))) == 2  # old results set aside
    recorded = json.loads((jobs_in(tmp_path / "sweep")[0] / "job.json").read_text())["weights"]
    assert recorded[str(flow)] == json.loads(flow.with_suffix(".json").read_text())["sha256"]
    assert len(summary(tmp_path / "sweep")) == 2  # the new jobs' rows only
