"""glass reproduce / glass report: every definition composes, a small experiment runs end to end,
and reports are redrawn from results without recomputing."""

import json
import re

import pytest
from typer.testing import CliRunner

from glass.cli import app
from glass.config import UserError, compose
from glass.definitions import scales_of
from glass.reproduce import job_overrides, load, names
from glass.runner import Shared, build_job

runner = CliRunner()


@pytest.mark.parametrize("name", names())
def test_every_experiment_definition_composes_at_every_scale(name, tmp_path):
    spec = load(name)
    assert spec["title"] and spec["paper"] and spec["ours"] and spec["report"]["tables"]
    for scale in scales_of(spec):
        overrides, labels = job_overrides(spec, scale, [f"out_dir={tmp_path}"])
        assert len(overrides) == len(labels) >= 1
        shared = Shared()
        jobs = [build_job(ov, compose(ov), shared) for ov in overrides]  # instantiates and validates
        keys = {json.dumps(ov) for ov in overrides}
        assert len(keys) == len(jobs)  # no two jobs alike
        for table in spec["report"]["tables"]:
            assert table["value"]


def test_a_variant_may_sweep_more_seeds_than_the_others():
    """A variant given as {overrides, sweep} replaces those keys of its scale's sweep (more seeds for the
    two methods a comparison needs) and keeps the others; a value on the command line still wins."""
    spec = {"scales": {"small": {
        "overrides": ["model=gmm"],
        "sweep": {"seed": [0, 1], "sampler.steps": [2, 4]},
        "variants": {"ode": ["sampler=ode"],
                     "glass": {"overrides": ["sampler=glass"], "sweep": {"seed": [0, 1, 2]}}},
    }}}  # fmt: skip
    jobs, labels = job_overrides(spec, "small", [])
    got = sorted((lab["variant"], ov[-2], ov[-1]) for ov, lab in zip(jobs, labels))
    assert got == sorted([(v, f"seed={s}", f"sampler.steps={m}") for v, seeds in (("ode", 2), ("glass", 3))
                          for s in range(seeds) for m in (2, 4)])  # fmt: skip
    assert all(ov[:2] == ["model=gmm", f"sampler={lab['variant']}"] for ov, lab in zip(jobs, labels))
    from glass.definitions import swept_keys

    # what a user's value replaces
    assert swept_keys(spec, "small") == {"seed": [0, 1, 2], "sampler.steps": [2, 4]}
    jobs, labels = job_overrides(spec, "small", ["seed=7"])
    assert len(jobs) == 4 and all(ov[-1] == "seed=7" for ov in jobs)


def test_a_sweep_may_say_range_as_hydra_does():
    """``range(start, stop[, step])`` in a scale's, a variant's or the prompt set's sweep is the list
    Hydra's parser gives (stop excluded), so job_overrides sees plain lists; an empty, huge, zero-step or
    malformed one is one clear line."""
    from glass.definitions import _check_definition

    spec = {"title": "x", "scales": {
        "small": {"overrides": [], "sweep": {"seed": "range(0, 3)", "sampler.steps": [2]},
                  "variants": {"a": [], "b": {"overrides": [], "sweep": {"seed": " range( 10 , 4 , -3 ) "}}}},
        "paper": {"overrides": [], "sweep": {"seed": [0, 1]}}},
        "prompt_set": {"sweep": {"seed": "range(2,4)"}}}  # fmt: skip
    _check_definition("x", spec)
    assert spec["scales"]["small"]["sweep"] == {"seed": [0, 1, 2], "sampler.steps": [2]}
    assert spec["scales"]["small"]["variants"]["b"]["sweep"] == {"seed": [10, 7]}
    assert spec["prompt_set"]["sweep"] == {"seed": [2, 3]}
    assert spec["scales"]["paper"]["sweep"] == {"seed": [0, 1]}
    jobs, _ = job_overrides(spec, "small", [])
    assert sorted(ov[-2] for ov in jobs) == ["seed=0", "seed=1", "seed=10", "seed=2", "seed=7"]
    for bad_range, why in (("range(5, 0)", "selects no values; a range must select 1 to 100,000"),
                           ("range(1, 9, -2)", "selects no values"),
                           ("range(0, 1000000)", "selects over 100,000 values"),
                           (f"range(0, {10**30})", "selects over 100,000 values"),
                           ("range(0, 10**9)", "is not Hydra's range(start, stop[, step])"),
                           ("range(0, 5, 0)", "is not Hydra's range(start, stop[, step])"),
                           ("range(0", "is not Hydra's range(start, stop[, step]), in quotes")):
        spec["scales"]["small"]["sweep"] = {"seed": bad_range}
        with pytest.raises(UserError, match=f"^experiment x: scales.small.sweep.seed: .*{re.escape(why)}"):
            _check_definition("x", spec)
    spec["scales"]["small"]["sweep"] = {"task.t": "range(0.25, 1, 0.25)"}  # Hydra's ranges take floats too
    _check_definition("x", spec)
    assert spec["scales"]["small"]["sweep"] == {"task.t": [0.25, 0.5, 0.75]}
    spec["scales"]["small"]["sweep"] = {"seed": 3}
    with pytest.raises(UserError, match="scales.small.sweep must be a mapping of lists or Hydra.s range"):
        _check_definition("x", spec)
    # the committed definitions that use it: job directories named by these seeds resume
    assert load("table4-sampling")["scales"]["large"]["sweep"]["seed"] == list(range(84))
    assert load("table5-guidance")["scales"]["large"]["sweep"]["seed"] == list(range(100))


def test_reproduce_end_to_end_then_report_redraws_without_recomputing(tmp_path):
    tiny = ["model=gmm", "task.n=100", f"out_dir={tmp_path}"]
    seeds = len(load("fig7-rho")["scales"]["small"]["sweep"]["seed"])
    jobs = 10 * seeds  # 10 variants x the definition's seeds
    res = runner.invoke(app, ["reproduce", "fig7-rho", *tiny])
    assert res.exit_code == 0, res.output
    (base,) = (tmp_path / "reproduce" / "fig7-rho").iterdir()  # small-<hash>: the overrides change results
    assert base.name.startswith("small-")
    md = (base / "fig7-rho.md").read_text()
    assert f"{jobs} of {jobs} jobs finished" in md and "| rho=0.4 |" in md and "| ddpm^0.5 |" in md
    assert (base / "fig7-rho.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((base / "sweep.json").read_text())
    assert meta["group"] == "fig7-rho-small" and meta["definition"]["scale"] == "small"
    stamps = {p: p.stat().st_mtime_ns for p in base.glob("*/metrics.json")}
    assert len(stamps) == jobs

    (base / "fig7-rho.png").unlink()
    (base / "fig7-rho.md").unlink()
    redraw = runner.invoke(app, ["report", str(base)])
    assert redraw.exit_code == 0, redraw.output
    assert (base / "fig7-rho.md").read_text() == md and (base / "fig7-rho.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in base.glob("*/metrics.json")} == stamps

    # the table's numbers are the mean over the seeds' jobs
    rows = [json.loads(line) for line in (base / "summary.jsonl").read_text().splitlines()]
    energies = [r["energy"] for r in rows if r["variant"] == "rho=0.4"]
    assert len(energies) == seeds and f"| rho=0.4 | {sum(energies) / seeds:.4f} ±" in md
    # and the paired table's are the mean and standard error of the per-seed differences
    sde = {r["seed"]: r["energy"] for r in rows if r["variant"] == "SDE"}
    d = [r["energy"] - sde[r["seed"]] for r in rows if r["variant"] == "rho=0.4"]
    mean = sum(d) / seeds
    se = (sum((x - mean) ** 2 for x in d) / (seeds - 1) / seeds) ** 0.5
    assert f"| rho=0.4 − SDE | {mean:.4f} ± {se:.4f} | {seeds} |" in md

    again = runner.invoke(app, ["reproduce", "fig7-rho", *tiny])
    assert again.exit_code == 0 and f"{jobs} already finished" in again.stderr
    other = runner.invoke(app, ["reproduce", "fig7-rho", *tiny, "task.n=101", "seed=0", "--fresh"])  # other
    assert other.exit_code == 0 and "running 10" in other.stderr  # overrides: a directory of their own
    assert len(list((tmp_path / "reproduce" / "fig7-rho").iterdir())) == 2


def test_report_of_a_plain_sweep_and_bad_paths(tmp_path):
    res = runner.invoke(
        app, ["run", "-m", "model=gmm", "sampler=sde,glass", "sampler.steps=2,4", "task.t=0.2,0.7",
              "task.n=100", f"out_dir={tmp_path}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (sweep,) = tmp_path.glob("multirun/*")
    written = (sweep / "summary.md").read_text()  # glass run -m writes the report at the end of the sweep
    assert (sweep / "summary.png").is_file()
    out = runner.invoke(app, ["report", str(sweep)])
    assert out.exit_code == 0, out.output
    md = (sweep / "summary.md").read_text()
    assert md == written
    assert "| config | kernel | steps=2 | steps=4 |" in md and "| task.t=0.7 | glass |" in md
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"
    for bad in (tmp_path / "missing", tmp_path):
        res = runner.invoke(app, ["report", str(bad)])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1


def test_reproduce_bad_input_is_one_line(tmp_path):
    for args in (["nope"], ["fig7-rho", "--scale", "huge"], ["fig7-rho", "task.nope=1"]):
        res = runner.invoke(app, ["reproduce", *args, f"out_dir={tmp_path}"])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert not (tmp_path / "reproduce").exists()


def test_an_override_of_a_swept_key_says_what_it_replaces(tmp_path):
    args = ["reproduce", "fig7-rho", "model=gmm", "task.n=20", "seed=5", f"out_dir={tmp_path}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    seeds = load("fig7-rho")["scales"]["small"]["sweep"]["seed"]
    assert f"seed: your value replaces the definition's sweep over {seeds} (10 jobs)" in res.stderr
    assert "10 jobs, running 10" in res.stderr


def test_the_large_scale_runs_the_strongest_checkpoint_and_says_so(tmp_path):
    """The definitions with a large scale run model=mnist_v4 there (the small scale keeps the default
    checkpoint), and the report describes the scale it ran: the large block's own ``ours`` text."""
    from glass.report import _header

    with_large = names("large")
    assert {"table4-sampling", "table1-fks", "table5-guidance"} <= set(with_large)
    for name in with_large:
        spec = load(name)
        small, _ = job_overrides(spec, "small", [])
        large, _ = job_overrides(spec, "large", [])
        assert all("model=mnist" in ov for ov in small) and all("model=mnist_v4" in ov for ov in large)
        head = "\n".join(_header({**spec, "scale": "large"}, spec["title"], "large"))
        assert "Scale: **large**" in head and "model=mnist_v4" in head and "(model=mnist)" not in head
        assert "(model=mnist)" in "\n".join(_header(spec, spec["title"], "small"))
    res = runner.invoke(app, ["reproduce", "fig7-rho", "--scale", "large", f"out_dir={tmp_path}"])
    assert res.exit_code == 2 and "has no scale 'large'; choose from: small, paper" in res.stderr


def test_make_reproduce_scale_large_runs_exactly_the_definitions_that_have_it():
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dry = subprocess.run(["make", "-n", "-s", "reproduce", "SCALE=large"],
                         cwd=root, capture_output=True, text=True).stdout  # fmt: skip
    listed = re.search(r"for name in (.*?); do glass reproduce", dry)
    assert listed, dry
    assert listed.group(1).split() == names("large") == ["table1-fks", "table4-sampling", "table5-guidance"]
    assert names("paper") == names()  # every definition has the fixed scales
    with pytest.raises(UserError, match="unknown scale 'huge'; choose from: small, paper, large"):
        names("huge")


def test_the_large_scale_end_to_end_on_the_cpu_says_what_it_costs(tmp_path):
    """One job of Table 5's large scale (two outputs): it runs mnist_v4, reports under large-<hash>/
    with the large block's description, and says first that the scale is sized for a GPU."""
    args = ["reproduce", "table5-guidance", "--scale", "large", "task.groups=2", "seed=0",
            "task.transitions=1", "sampler.steps=1", f"out_dir={tmp_path}"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    note = load("table5-guidance")["scales"]["large"]["note"]
    assert f"--scale large on the CPU: {note}" in res.stderr.replace("\n", " ")
    (base,) = (tmp_path / "reproduce" / "table5-guidance").iterdir()
    assert base.name.startswith("large-")
    md = (base / "table5-guidance.md").read_text()
    assert "Scale: **large**" in md and "(model=mnist_v4)" in md and "6 of 6 jobs finished" in md
    models = {json.loads((d / "job.json").read_text())["overrides"][0] for d in base.iterdir() if d.is_dir()}
    assert models == {"model=mnist_v4"}
