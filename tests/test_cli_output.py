"""What the CLI prints: progress lines in logs (stdout not a terminal), per-kernel sampling time, the
W&B sync path after the rename, and the spellings users bring from Hydra and other tools."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from glass.cli import app, text_progress

runner = CliRunner()
TINY = ["model=gmm", "sampler=compare", "sampler.samplers=[sde,glass]", "sampler.steps=[2]", "task.n=20",
        "task.points=2", "metric=oracle", "metric.floor_repeats=2", "metric.n_projections=8"]  # fmt: skip


def test_text_progress_prints_elapsed_and_eta_now_and_then():
    now, lines = [0.0], []
    progress = text_progress(lines.append, every=10.0, clock=lambda: now[0])
    advance = progress("posterior", 5)
    for t in (2.0, 4.0, 13.0, 14.0, 30.0):
        now[0] = t
        advance()
    assert lines == [
        "posterior: 1/5, elapsed 0:00:02, ETA 0:00:08",  # the first step: a rate to extrapolate
        "posterior: 3/5, elapsed 0:00:13, ETA 0:00:09",  # 10 s after the last line
        "posterior: 5/5, elapsed 0:00:30",  # the last step, always
    ]


def test_a_sweeps_progress_says_which_job_of_how_many(tmp_path):
    """Each job's progress lines carry its place in the sweep (an hour-long `glass reproduce` printed
    80 identical `generate: 5/5` pairs); a resumed sweep counts the jobs it runs."""
    args = ["run", "-m", *TINY[:3], "sampler.steps=[1],[2],[3]", *TINY[4:], f"out_dir={tmp_path}",
            "--sweep-dir", str(tmp_path / "sweep")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    places = re.findall(r"^\[(\d)/(\d)\] posterior: \d/\d, elapsed", res.stderr, re.M)
    assert sorted(set(places)) == [("1", "3"), ("2", "3"), ("3", "3")], res.stderr
    args[args.index("sampler.steps=[1],[2],[3]")] = "sampler.steps=[1],[2],[3],[4]"
    more = runner.invoke(app, args)
    assert more.exit_code == 0 and set(re.findall(r"^\[(\d/\d)\] posterior", more.stderr, re.M)) == {"1/1"}
    args[args.index("sampler.steps=[1],[2],[3],[4]")] = "sampler.steps=[1],[4]"  # narrower: said, not lost
    fewer = runner.invoke(app, args)
    assert fewer.exit_code == 0 and "2 finished jobs in" in fewer.stderr
    assert "left out of its summary" in fewer.stderr
    assert len([d for d in (tmp_path / "sweep").iterdir() if d.is_dir() and d.name[0].isdigit()]) == 4


def test_a_run_in_a_log_shows_progress_and_per_kernel_time(tmp_path):
    res = runner.invoke(app, ["run", *TINY, f"out_dir={tmp_path}"])  # CliRunner: not a terminal
    assert res.exit_code == 0, res.output
    assert re.search(r"^posterior: 2/2, elapsed \d:\d\d:\d\d$", res.stderr, re.M), res.stderr
    assert "sampling s" in res.stdout
    import json

    (run,) = tmp_path.glob("runs/*/*")
    rows = json.loads((run / "metrics.json").read_text())["rows"]
    times = [r["kernel_time_s"] for r in rows]
    assert len(times) == 2 and all(t > 0 for t in times)
    assert sum(times) <= json.loads((run / "metrics.json").read_text())["wall_time_s"]


def test_version_help_and_hydra_cfg_spellings():
    from glass import __version__

    for args in (["--version"], ["-V"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and res.stdout.strip() == __version__
    for args in (["-h"], ["run", "-h"], ["reproduce", "-h"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage: " in res.stdout and "--help" in res.stdout
    job = runner.invoke(app, ["run", "--cfg", "job", "model=gmm"])
    plain = runner.invoke(app, ["run", "--cfg", "model=gmm"])
    assert job.exit_code == 0 and job.stdout == plain.stdout
    assert "_target_: glass.models.gmm.ring" in job.stdout
    hydra = runner.invoke(app, ["run", "--cfg", "hydra"])
    assert hydra.exit_code == 2 and hydra.stderr.startswith("error: --cfg hydra")


def test_wandb_offline_run_names_its_final_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    res = runner.invoke(app, ["run", *TINY, "logger=wandb", f"out_dir={tmp_path}"])
    assert res.exit_code == 0, res.output
    (line,) = [x for x in res.stderr.splitlines() if "wandb sync" in x]
    path = Path(line.split("wandb sync ", 1)[1].rstrip("`"))
    (run,) = tmp_path.glob("runs/*/*")
    assert path.parent == run / "wandb" and path.is_dir() and path.name.startswith("offline-run-")


def test_a_metric_named_like_an_override_key_keeps_its_column():
    """reward=linear picks the reward; the rows' reward is a number: its column stays (a swept value
    such as sampler=glass, equal to the override, is hidden as the run column says it already)."""
    from rich.console import Console

    from glass.cli import results_table

    rows = [{"job": j, "overrides": f"reward=linear sampler=glass seed={j}", "sampler": "glass M=2", "nfe": 2,
             "reward": 1.25 + j, "reward_se": 0.1, "kernel_time_s": 0.5, "wall_time_s": 2.0}
            for j in (0, 1)]  # fmt: skip
    console = Console(record=True, width=200)
    console.print(results_table(rows))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "sampler" in line)
    assert "reward" in header and "1.25 ± 0.1" in text and "2.25 ± 0.1" in text
    assert "sampling s" in header and "0.5" in text and "2.0" not in text  # per kernel, not the job's total


def test_one_value_has_no_standard_error_and_the_table_shows_the_value_alone():
    """A mean over one value (one group, one prompt) had standard error 0: shown "± 0", it read as
    exact. It is NaN, and the table shows the value alone."""
    import math

    from rich.console import Console

    from glass.cli import results_table
    from glass.metrics.rewards import mean_se

    mean, se = mean_se([1.5])
    assert mean == 1.5 and math.isnan(se) and mean_se([1.0, 3.0]) == (2.0, 1.0)
    rows = [{"job": 0, "overrides": "", "sampler": "glass M=2", "nfe": 2, "reward": mean, "reward_se": se,
             "kernel_time_s": 0.5}]  # fmt: skip
    console = Console(record=True, width=200)
    console.print(results_table(rows))
    text = console.export_text()
    assert "1.5" in text and "nan" not in text and "±" not in text


def test_a_sampler_option_that_does_not_apply_is_one_warning_line(tmp_path):
    """glass's own warnings reach a CLI user as one ``warning:`` line (here: sampler.compile on the
    oracle, which has no network to compile), not Python's two-line format with a source line."""
    import subprocess
    import sys

    args = [a for a in TINY if not a.startswith("sampler")] + ["sampler=glass", "sampler.steps=2",
                                                               "sampler.compile=true"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "glass.cli", "run", *args, f"out_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "compile" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: GLASS(steps=2"), proc.stderr
    assert "compile does not apply" in lines[0] and "UserWarning" not in proc.stderr


def test_a_resumed_job_leaves_no_offline_wandb_run_of_the_killed_attempt(tmp_path, monkeypatch):
    """A job killed while it ran leaves ``<dir>.partial`` with its W&B offline run (config only: the
    metrics are logged at the end); the rerun of that job starts a fresh run, and the finished
    directory holds that one alone, so ``wandb sync`` uploads no empty run beside it."""
    from glass.experiment import prepare
    from glass.runner import run_job

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (job,) = prepare([*TINY, "logger=wandb", f"out_dir={tmp_path}"])
    run_dir = tmp_path / "000-0123456789ab"
    killed = run_dir.with_name(run_dir.name + ".partial") / "wandb" / "offline-run-20260101_000000-killed0"
    killed.mkdir(parents=True)
    (killed / "run-killed0.wandb").write_bytes(b"")
    run_job(job, run_dir)
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    assert run.name != killed.name and not run_dir.with_name(run_dir.name + ".partial").exists()
