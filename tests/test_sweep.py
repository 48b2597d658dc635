"""Sweeps: Hydra launchers, one directory per job, summaries, and resuming after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from glass.cli import app

runner = CliRunner()
SWEEP = ["run", "-m", "model=gmm", "sampler=sde,glass", "sampler.steps=2,4", "task.n=100", "seed=3"]


def finished(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.suffix not in (".partial", ".failed"))  # fmt: skip


def test_tiny_sweep_end_to_end_then_resume_skips_finished_jobs(tmp_path):
    res = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}"])
    assert res.exit_code == 0, res.output
    (sweep,) = tmp_path.glob("multirun/*")
    jobs = finished(sweep)
    assert [p.name[:3] for p in jobs] == ["000", "001", "002", "003"]
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [(r["sampler_cfg"], r["sampler.steps"], r["sampler"]) for r in rows] == [
        ("sde", "2", "sde M=2"), ("sde", "4", "sde M=4"),
        ("glass", "2", "glass M=2"), ("glass", "4", "glass M=4"),
    ]  # fmt: skip
    assert all(int(r["nfe"]) == int(r["sampler.steps"]) and r["seed"] == "3" for r in rows)
    assert all(float(r["wall_time_s"]) > 0 and float(r["energy"]) > 0 for r in rows)
    assert len((sweep / "summary.jsonl").read_text().splitlines()) == 4
    for job in jobs:  # the directory name carries the hash of the job's resolved config
        assert json.loads((job / "job.json").read_text())["config_hash"] == job.name.split("-", 1)[1]
    before = {p: (p / "metrics.json").stat().st_mtime_ns for p in jobs}

    again = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}"])
    assert again.exit_code == 0, again.output
    assert "4 already finished (skipped)" in again.stderr and "running" not in again.stderr
    assert {p: (p / "metrics.json").stat().st_mtime_ns for p in finished(sweep)} == before
    assert list(csv.DictReader(open(sweep / "summary.csv"))) == rows

    # a damaged record is not trusted: that job alone runs again
    (jobs[1] / "metrics.json").write_text("{truncated")
    third = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}"])
    assert third.exit_code == 0, third.output
    assert "3 already finished (skipped), running 1" in third.stderr
    assert json.loads((jobs[1] / "metrics.json").read_text())["rows"][0]["sampler"] == "sde M=4"
    assert (jobs[0] / "metrics.json").stat().st_mtime_ns == before[jobs[0]]

    # extending the sweep into the same directory reuses the finished jobs by config hash
    wider = [*SWEEP[:4], "sampler.steps=2,4,8", *SWEEP[5:], f"out_dir={tmp_path}", f"--sweep-dir={sweep}"]
    fourth = runner.invoke(app, wider)
    assert fourth.exit_code == 0, fourth.output
    assert "4 already finished (skipped), running 2" in fourth.stderr
    assert len(finished(sweep)) == 6 and len(list(csv.DictReader(open(sweep / "summary.csv")))) == 6

    fresh = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}", "--fresh"])
    assert fresh.exit_code == 0 and "running 4" in fresh.stderr
    assert len(list(tmp_path.glob("multirun/*"))) == 2


def joblib_workers() -> list[int]:
    """Live child processes of this one that are joblib (loky) workers (not its small resource tracker)."""
    me, found = os.getpid(), []
    for p in Path("/proc").iterdir():
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z" and b"loky" in cmd and b"resource_tracker" not in cmd:
            found.append(int(p.name))
    return found


def test_joblib_launcher_runs_jobs_in_worker_processes(tmp_path):
    res = runner.invoke(
        app, [*SWEEP, f"out_dir={tmp_path}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    )
    assert res.exit_code == 0, res.output
    assert "JoblibLauncher" in res.stderr
    assert not joblib_workers(), "the sweep's worker processes end with it (joblib would keep them 5 min)"
    (sweep,) = tmp_path.glob("multirun/*")
    serial = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path / 'serial'}"])
    assert serial.exit_code == 0
    (other,) = (tmp_path / "serial").glob("multirun/*")
    key = ("sampler", "nfe", "energy")
    summaries = [csv.DictReader(open(d / "summary.csv")) for d in (sweep, other)]
    rows = [[tuple(r[k] for k in key) for r in rs] for rs in summaries]
    assert rows[0] == rows[1]  # the same seeds give the same numbers in worker processes


def test_launcher_errors_are_one_line_and_write_nothing(tmp_path):
    res = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}", "hydra/launcher=nope"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "launcher" in res.stderr
    assert not (tmp_path / "multirun").exists()
    res = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}", "hydra.sweep.dir=/elsewhere"])
    assert res.exit_code == 2 and "--sweep-dir" in res.stderr and not (tmp_path / "multirun").exists()
    res = runner.invoke(app, ["run", "model=gmm", "hydra/launcher=joblib", f"out_dir={tmp_path}"])
    assert res.exit_code == 2 and "sweeps only" in res.stderr


def test_killed_sweep_leaves_no_finished_looking_job_and_resumes(tmp_path):
    """SIGKILL a sweep while its second job runs: the first job's record is intact, the second is a
    .partial directory without metrics; running the same sweep again runs only the unfinished jobs."""
    args = [sys.executable, "-m", "glass.cli", "run", "-m", "model=gmm64", "sampler=glass",
            "sampler.steps=1,40,41", "task.n=500", f"out_dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    sweep = None
    while time.time() < deadline:
        found = list(tmp_path.glob("multirun/*/001-*.partial"))  # made by Hydra before the job claims it
        if found and list(found[0].parent.glob(".claims/*.lock")):
            sweep = found[0].parent
            break
        time.sleep(0.05)
    assert sweep is not None, proc.communicate()[1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(sweep.glob(".claims/*.lock")), "the killed job's claim file is left behind (its lock is not)"
    (first,) = finished(sweep)
    (partial,) = sweep.glob("001-*.partial")
    assert first.name.startswith("000-") and not (partial / "metrics.json").exists()
    record = (first / "metrics.json").read_bytes()
    json.loads(record)

    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "1 already finished (skipped), running 2" in res.stderr
    assert [p.name[:3] for p in finished(sweep)] == ["000", "001", "002"]
    assert not list(sweep.glob("*.partial")) and (first / "metrics.json").read_bytes() == record
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["sampler"] for r in rows] == ["glass M=1", "glass M=40", "glass M=41"]


def test_wandb_runs_of_a_sweep_are_grouped_by_sweep(tmp_path, monkeypatch):
    import wandb

    calls = []

    class FakeRun:
        summary: dict = {}

        def log(self, metrics):
            calls[-1]["logged"].append(metrics)

        def finish(self):
            pass

    def fake_init(**kwargs):
        calls.append({**kwargs, "logged": []})
        return FakeRun()

    monkeypatch.setattr(wandb, "init", fake_init)
    res = runner.invoke(app, [*SWEEP, "logger=wandb", f"out_dir={tmp_path}"])
    assert res.exit_code == 0, res.output
    (sweep,) = tmp_path.glob("multirun/*")
    assert len(calls) == 4 and {c["group"] for c in calls} == {sweep.name}
    assert sorted(c["name"] for c in calls) == [p.name for p in finished(sweep)]
    assert all(c["logged"][0]["nfe"] in (2, 4) for c in calls)


def test_submitit_local_launcher_runs_the_cluster_code_path(tmp_path):
    """submitit_local pickles the task function and Hydra's context into separate processes, as
    submitit_slurm does on a cluster; the numbers equal the in-process launcher's."""
    tiny = ["run", "-m", "model=gmm", "sampler=sde,glass", "sampler.steps=2", "task.n=100"]
    res = runner.invoke(
        app,
        [*tiny, f"out_dir={tmp_path}", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
    )
    assert res.exit_code == 0, res.output
    basic = runner.invoke(app, [*tiny, f"out_dir={tmp_path / 'basic'}"])
    assert basic.exit_code == 0
    (a,) = tmp_path.glob("multirun/*")
    (b,) = (tmp_path / "basic").glob("multirun/*")
    assert a.name == b.name  # same jobs, same sweep name
    energy = [[r["energy"] for r in csv.DictReader(open(d / "summary.csv"))] for d in (a, b)]
    assert energy[0] == energy[1] and len(energy[0]) == 2


def test_sweep_jobs_sharing_a_model_can_switch_from_inference_to_gradients(tmp_path):
    """A shared classifier first loaded inside an inference-mode job (no guidance) must still work
    in a later job that needs reward gradients (guidance)."""
    res = runner.invoke(
        app, ["run", "-m", "task=guidance", "task.transitions=1", "task.groups=2", "sampler=glass",
              "sampler.steps=2", "task.guidance.lam=0.0,0.4", f"out_dir={tmp_path}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (sweep,) = tmp_path.glob("multirun/*")
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [float(r["grad_evals"]) > 0 for r in rows] == [False, True]


def test_a_config_edited_under_a_running_sweep_fails_its_jobs_with_one_line(tmp_path, monkeypatch):
    """The launcher composes each job from the files under conf/ as they are when it starts; a file
    edited while the sweep runs gives another config hash than the one planned. Each such job fails
    with one line saying so (was: KeyError on the hash, reported by nothing that ran the sweep
    through experiments.extend), nothing finished is touched, and the same command reruns them."""
    import glass.sweep

    real, run = glass.sweep.config_hash, glass.sweep.RunJob.__call__
    edited = []

    def composed_after_an_edit(self, cfg):
        if not edited:  # the first job runs as planned; then a file changes
            edited.append(True)
            return run(self, cfg)
        monkeypatch.setattr(glass.sweep, "config_hash", lambda c: "0123456789ab")
        try:
            return run(self, cfg)
        finally:
            monkeypatch.setattr(glass.sweep, "config_hash", real)

    monkeypatch.setattr(glass.sweep.RunJob, "__call__", composed_after_an_edit)
    res = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}"])
    assert res.exit_code == 1
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert len(finished(sweep)) == 1
    assert "error: 3 of 4 jobs failed" in res.stderr and res.stderr.count("error:") == 1
    assert "failed/error.txt" not in res.stderr  # these jobs never ran: no error.txt to point at
    assert not list(sweep.glob("*.partial"))  # nor a launcher's empty directory that looks killed
    assert "RunFailed: the job's config changed since the sweep was planned (hash 0123456789ab" in res.stderr
    assert "KeyError" not in res.stderr and "Traceback" not in res.stderr
    monkeypatch.undo()
    again = runner.invoke(app, [*SWEEP, f"out_dir={tmp_path}"])
    assert again.exit_code == 0 and len(finished(sweep)) == 4 and "1 already finished" in again.stderr


def test_a_job_built_by_the_launchers_worker_records_the_weights_its_build_fetched(tmp_path, monkeypatch):
    """A job the launcher runs in another process (joblib, submitit) is built there, and a hub
    pipeline not in the cache yet is downloaded by that build: its job.json keys the snapshot then
    fetched (was: the digest taken before the build, without it, so a later run on moved weights
    did not rerun the job)."""
    import glass.experiment
    import glass.runner
    import glass.sweep

    fetched, build, init = {}, glass.runner.build_job, glass.sweep.RunJob.__init__

    def build_and_download(overrides, cfg):
        fetched["hub:tiny/sd@main"] = "abc123"
        return build(overrides, cfg)

    def as_unpickled(self, sweep_dir, names, prepared=None, progress=None):
        init(self, sweep_dir, names, None, progress)  # no prepared jobs: each is built in __call__

    monkeypatch.setattr(glass.sweep.RunJob, "__init__", as_unpickled)
    monkeypatch.setattr(glass.runner, "build_job", build_and_download)  # the worker's build ...
    monkeypatch.setattr(glass.experiment, "build_job", build)  # ... not the planner's
    monkeypatch.setattr(glass.sweep, "weights_digest", lambda cfg: dict(fetched))
    args = ["run", "-m", "model=gmm", "sampler=sde", "sampler.steps=2,4", "task.n=50", f"out_dir={tmp_path}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stderr
    (sweep,) = (tmp_path / "multirun").iterdir()
    jobs = finished(sweep)
    assert len(jobs) == 2
    recorded = [json.loads((j / "job.json").read_text())["weights"] for j in jobs]
    assert recorded == [{"hub:tiny/sd@main": "abc123"}] * 2
