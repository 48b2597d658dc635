"""End-to-end CLI: default run, sweep, outputs on disk, and one-line errors for bad input."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from glass.cli import app
from glass.config import compose, groups, instantiate

runner = CliRunner()


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("runs/*/*") if p.is_dir() and p.suffix not in (".failed", ".partial"))


ORACLE = ["model=gmm", "sampler=glass"]  # the 2-D oracle with one GLASS kernel (the core's setting)


def rows_of(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["rows"]


def test_default_run_through_the_console_script(tmp_path):
    """The README's command, as a user types it (at 32 images): the MNIST posterior comparison, one
    run directory with config, metrics and image grid, a row per kernel, and SDE at 2 steps clearly
    worse than GLASS at 2 steps (the paper's few-step claim, with a margin of > 5x in FID here)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "glass.cli",
            "run",
            "task.points=32",
            "sampler.steps=[2]",
            f"out_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "results" in proc.stdout and "fid" in proc.stdout and "32 samples vs 10000 reference" in proc.stdout
    )
    (run,) = run_dirs(tmp_path)
    assert run.name.endswith(tuple("0123456789abcdef")) and "posterior-compare" in run.name
    rows = {r["sampler"]: r for r in rows_of(run)}
    assert set(rows) == {"sde M=2", "glass M=2", "ode M=2"}
    assert all(
        r["nfe"] == 2 and r["fid_n_samples"] == 32 and 0 <= r["label_agreement"] <= 1 for r in rows.values()
    )
    assert rows["sde M=2"]["fid"] > 5 * rows["glass M=2"]["fid"] > 0
    assert rows["glass M=2"]["label_agreement"] > rows["sde M=2"]["label_agreement"]
    assert json.loads((run / "metrics.json").read_text())["seed"] == 0
    assert OmegaConf.load(run / "config.yaml").model._target_ == "glass.models.mnist.load_flow"
    assert (run / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_results_separate_good_from_bad_samplers(tmp_path):
    """The oracle metric means something: the deterministic ODE cannot represent a posterior, a
    converged GLASS kernel sits at the noise floor."""
    res = runner.invoke(
        app,
        [
            "run",
            "-m",
            "model=gmm",
            "sampler=ode,glass",
            "+sampler.solver=midpoint",
            "task.n=300",
            f"out_dir={tmp_path}",
        ],
    )
    assert res.exit_code == 2 and res.stderr.count("\n") == 1  # solver is not an ODE option
    res = runner.invoke(
        app,
        [
            "run",
            "-m",
            "model=gmm",
            "sampler=ode,sde",
            "sampler.steps=16",
            "task.n=300",
            f"out_dir={tmp_path}",
        ],
    )
    assert res.exit_code == 0, res.output
    res2 = runner.invoke(
        app,
        ["run", *ORACLE, "sampler.steps=16", "sampler.solver=midpoint", "task.n=300", f"out_dir={tmp_path}"],
    )
    assert res2.exit_code == 0, res2.output
    (sweep,) = tmp_path.glob("multirun/*")
    rows_all = list(csv.DictReader(open(sweep / "summary.csv")))
    (glass_row,) = rows_of(run_dirs(tmp_path)[0])
    ode, sde = (
        next(r for r in rows_all if r["overrides"].startswith(f"model=gmm sampler={k}"))
        for k in ("ode", "sde")
    )
    assert float(ode["energy"]) > 5 * float(ode["energy_floor"])
    assert glass_row["energy"] < 3 * glass_row["energy_floor"]
    assert int(ode["nfe"]) == int(sde["nfe"]) == 16 and glass_row["nfe"] == 32


def test_sweep_jobs_share_model_metric_and_reward(tmp_path):
    """Weights and reference statistics are loaded once per call, not once per job."""
    from glass.experiment import prepare

    jobs = prepare(["task=value", "seed=0,1", f"out_dir={tmp_path}"], multirun=True)
    assert len(jobs) == 2 and jobs[0].model is jobs[1].model
    assert jobs[0].metric is jobs[1].metric and jobs[0].reward is jobs[1].reward
    other = prepare(["task=value", "reward.target=1,2", f"out_dir={tmp_path}"], multirun=True)
    assert other[0].reward is not other[1].reward and other[0].reward.target == 1


def test_run_directories_are_unique_within_one_second(tmp_path):
    from glass.experiment import run

    dirs = {run([*ORACLE, "task.n=50", f"out_dir={tmp_path}"])[0] for _ in range(3)}
    assert len(dirs) == 3 and all(d.is_dir() for d in dirs)


def test_generate_task_on_the_64d_oracle(tmp_path):
    """Generation on the 64-D oracle scores its samples against exact ones: coarse (2 x 3 steps) far
    above the Monte-Carlo floor, 2 x 24 steps within 2 floor standard deviations of it."""
    res = runner.invoke(
        app,
        ["run", "model=gmm64", "sampler=compare", "sampler.samplers=[glass]", "sampler.steps=[3,24]",
         "task=generate", "task.transitions=2", "task.n=300", f"out_dir={tmp_path}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = run_dirs(tmp_path)
    coarse, fine = rows_of(run)
    assert (coarse["nfe"], fine["nfe"]) == (6, 48)
    assert coarse["energy"] > coarse["energy_floor"] + 5 * coarse["energy_floor_std"]
    assert fine["energy"] < fine["energy_floor"] + 2 * fine["energy_floor_std"]
    assert (run / "samples.png").stat().st_size > 1000


BAD = [
    (["task.t=1.0"], "task.t must be a number in [0, 1), got 1.0"),
    (["task.t=-0.5"], "task.t must be a number in [0, 1)"),
    (["sampler.rho=1.5"], "sampler.rho must be 'ddpm' or a number in [-1, 1], got 1.5"),
    (["sampler.steps=0"], "sampler.steps must be an integer >= 1, got 0"),
    (["sampler.steps=abc"], "sampler.steps must be an integer >= 1, got 'abc'"),
    (["sampler=foo"], "unknown sampler 'foo'; choose from: compare, ddpm, glass, ode, sde"),
    (["-m", "sampler=sde,foo"], "unknown sampler 'foo'; choose from: compare, ddpm, glass, ode, sde"),
    (["task.foo=1"], "unknown key 'task.foo'; allowed keys: t, points, n"),
    (
        ["sampler.samplers=[sde,foo]"],
        "sampler.samplers: unknown sampler 'foo'; choose from: ddpm, glass, ode, sde",
    ),
    (["sampler.steps=[2,0]"], "sampler.steps must be an integer >= 1, got 0"),
    (["sampler.rho=[ddpm,2]"], "sampler.rho must be 'ddpm' or a number in [-1, 1], got 2"),
    (["sampler.steps=[]"], "sampler.steps must be a value or a non-empty list"),
    (["metric=oracle"], "metric=oracle needs an exact oracle model"),
    (["model=gmm", "metric=fid"], "metric=fid scores images (model=mnist)"),
    (["task=value", "metric=fid"], "task=value is scored with metric=correlation"),
    (["task=best_of_n", "reward=linear"], "reward=linear is the oracle's reward"),
    (["model=gmm", "task=best_of_n", "reward=classifier"], "reward=classifier needs an MNIST model"),
    (["reward=classifier", "reward.target=10"], "reward.target must be an integer in [0, 9], got 10"),
    (["task=value", "task.truth_sampler=ode"], "task.truth_sampler must be glass or sde, got 'ode'"),
    (["model.device=cuda:7"], "model.device='cuda:7' but no CUDA GPU is available here"),
    (["model.device=tpu"], "model.device must be a torch device"),
    (["metric=fid", "metric.features=inception", "metric.inception_path=/nonexistent.pt"], "does not exist"),
    (
        ["model.path=/nonexistent/flow.safetensors"],
        "no checkpoint file '/nonexistent/flow.safetensors' (a .safetensors file with its .json manifest "
        "beside it; `glass train flow` makes one)",
    ),
    (["foo=1"], "unknown key 'foo'"),
    (["task.t=[0.2"], "malformed override 'task.t=[0.2'"),
    (["sampler.steps"], "malformed override"),
    (["+sampler.foo=3"], "sampler: unexpected option 'foo'"),
    (["sampler.steps=2,4"], "is a sweep; add -m"),
    (["-m", "sampler.steps=2,0"], "sampler.steps must be an integer >= 1, got 0"),
    (["model=gmm", "model.schedule=foo"], "unknown schedule 'foo'"),
    (["seed=-1"], "seed must be an integer in [0, 4294967295]"),
    (["--bogus"], "unknown option '--bogus'"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", *args, f"out_dir={out}"])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not (out / "runs").exists() and not (out / "multirun").exists()


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = runner.invoke(app, ["run", f"out_dir={blocker / 'sub'}"])
    assert res.exit_code == 2 and res.stderr.startswith("error: cannot write to the output directory")


def test_an_error_line_keeps_the_files_it_points_at_whole(tmp_path, capsys):
    """Long values are shortened in an error line (no 100 kB echo), but not a path that exists, also
    inside punctuation: "(it holds PATH);"."""
    import typer

    from glass.cli import _fail

    deep = tmp_path / ("d" * 150) / "lock"
    deep.parent.mkdir()
    deep.write_text("")
    with pytest.raises(typer.Exit):
        _fail(f"busy (it holds {deep}); and {'x' * 300}")
    err = capsys.readouterr().err
    assert err.startswith(f"error: busy (it holds {deep}); and xxx") and "x" * 300 not in err


def test_failed_run_is_marked_not_finished(tmp_path, monkeypatch):
    from glass.tasks import Posterior

    def boom(self, *a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(Posterior, "__call__", boom)
    res = runner.invoke(app, ["run", *ORACLE, f"out_dir={tmp_path}"])
    assert res.exit_code == 1 and "simulated failure" in res.stderr and res.stderr.count("\n") == 1
    assert run_dirs(tmp_path) == []
    (failed,) = tmp_path.glob("runs/*/*.failed")
    assert "simulated failure" in (failed / "error.txt").read_text()
    assert res.stderr.endswith(f"; the traceback is in {failed / 'error.txt'}\n")  # not only GLASS_DEBUG


def test_help_explains_groups_and_overrides():
    res = runner.invoke(app, ["run", "--help"])
    assert res.exit_code == 0
    for word in (
        "sampler",
        "compare, ddpm, glass, ode, sde",
        "task",
        "best_of_n, fk_steering, generate, guidance, inverse, posterior, value",
        "sampler.steps",
        "-m",
        "sampler.steps=[2,8]",  # brackets are Rich markup unless escaped: the list was dropped
        "sampler.samplers=[sde,glass,ode,ddpm]",
    ):
        assert word in " ".join(res.output.replace("│", " ").split()), word
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "run" in top.output


def test_cfg_prints_the_composed_config():
    res = runner.invoke(app, ["run", "--cfg", "sampler=sde", "sampler.steps=3"])
    assert res.exit_code == 0 and "steps: 3" in res.stdout and "glass.samplers.SDE" in res.stdout


@pytest.mark.parametrize("args, says", [
    (["sampler=glass", "sampler.steps=-3"], "error: sampler.steps must be an integer >= 1, got -3"),
    (["seed=-1"], "error: seed must be an integer in [0, 4294967295]"),
    (["-m", "sampler=sde", "sampler.steps=2,0"], "error: sampler.steps must be an integer >= 1, got 0"),
    (["model.data_root=/no/such/dir"], "error: model.data_root: the data directory '/no/such/dir' does not"),
])  # fmt: skip
def test_cfg_checks_the_options_before_printing(args, says):
    """--cfg refuses what a run would refuse before loading a model, with the run's one line and exit 2,
    and prints nothing (a sweep: no job's config when one job's options are bad)."""
    res = runner.invoke(app, ["run", "--cfg", *args])
    assert res.exit_code == 2 and res.stderr.startswith(says) and res.stdout == "", res.output


PRETRAINED = ("flux", "flux_kontext", "flux2", "flux2_dev", "sd3", "sd", "sdxl", "ddpm", "sit")


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in groups().items() for o in opts])
def test_every_config_composes_and_instantiates(group, option):
    cfg = compose([f"{group}={option}"])
    if group == "model" and option in PRETRAINED:  # hub weights: loading is tested offline elsewhere
        assert cfg.model._target_.startswith(("glass.models.", "glass.pipelines."))
        return
    from hydra.utils import get_object

    from glass.models.base import Model

    for node in ("sampler", "task", "metric", "reward", "logger", "model"):
        obj, target = instantiate(cfg[node], node), get_object(cfg[node]._target_)
        assert isinstance(obj, target if isinstance(target, type) else Model), (node, obj)  # loaders: a Model
        if isinstance(target, type):  # the config's values reach the object (those it keeps by name;
            # WANDB_MODE, set to disabled for the tests, wins over logger.mode as for users)
            scalars = {k: v for k, v in cfg[node].items() if isinstance(v, (bool, int, float, str))}
            kept = {k: v for k, v in scalars.items() if hasattr(obj, k) and (node, k) != ("logger", "mode")}
            for key, value in kept.items():
                got = getattr(obj, key)
                assert (str(got) if isinstance(got, Path) else got) == value, (node, key, got, value)
