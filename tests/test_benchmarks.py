"""The real-size GPU benchmark script runs end to end at toy size on the CPU (so a lent GPU's ten
minutes are not spent finding its bugs), and writes what it promises."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_real_size_script_at_toy_size(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_real_size
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert gpu_real_size.FLUX["num_single_layers"] == 38 and gpu_real_size.SD35M["num_layers"] == 24
    from diffusers import Flux2Transformer2DModel

    with torch.device("meta"):  # FLUX.2 [dev]'s real layout: 32.2 B parameters, no memory taken
        flux2 = Flux2Transformer2DModel(**gpu_real_size.FLUX2)
    assert round(sum(p.numel() for p in flux2.parameters()) / 1e9, 1) == 32.2
    gpu_real_size.main(["--small", "--reps", "1", "--no-compile", "--models", "flux", "--out", str(tmp_path)])
    gpu_real_size.main(["--small", "--reps", "1", "--no-compile", "--models", "sd3,flux2", "--out",
                        str(tmp_path)])  # fmt: skip
    res = json.loads((tmp_path / "bench-real-small.json").read_text())
    assert [m["model"] for m in res["models"]] == ["flux", "sd3", "flux2"]  # the second call kept the first's
    for m in res["models"]:
        assert [r["batch"] for r in m["eager"]] == [1, 4] and all(r["ratio"] > 0 for r in m["eager"])
        assert [r["chunk"] for r in m["fk"]] == [None, 2]
        assert all(r["particle_steps_per_s"] > 0 for r in m["fk"])
    md = (tmp_path / "bench-real-small.md").read_text()
    assert "| flux (0.00 B) | float32 | eager | 4 |" in md and "| sd3 | 2 |" in md


def test_inner_solver_exploration_at_toy_size(tmp_path, monkeypatch):
    """benchmarks/inner_solvers.py (issue 19 item 4) end to end on few samples and budgets; its
    quadrature "exp. Adams 2 + corrector" is GLASS's multistep solver, sample for sample."""
    import torch

    import glass

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import inner_solvers
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setattr(inner_solvers, "BUDGETS", (1, 2, 3))
    assert inner_solvers.main(["--n", "32", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "inner_solvers.md").read_text()
    assert "## posterior 0.2 -> 1" in md and "| SDE (eq. 5) | " in md
    assert json.loads((tmp_path / "inner_solvers.json").read_text())["n"] == 32
    gmm = glass.models.random_mixture(dim=4, n_components=3, scale=1.0, std=0.3, seed=0)
    x = gmm.sample_marginal(8, 0.2, torch.Generator().manual_seed(0))
    for t_next in (0.6, 1.0):
        kernel = glass.GLASS(5, solver="multistep")
        ours = kernel.transition(gmm, x, 0.2, t_next, torch.Generator().manual_seed(1))
        theirs = inner_solvers.Adams(5, 2, corrector=True).transition(
            gmm, x, 0.2, t_next, torch.Generator().manual_seed(1)
        )
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_committed_bench_report_is_its_json_with_a_date_per_section():
    """bench.md is markdown(bench.json) (``python benchmarks/bench.py --render`` after a format change),
    and every section says when it was measured: ``--only`` reruns some sections, so the file's
    header date is not theirs."""
    from benchmarks.bench import accuracy_png, markdown

    results_dir = ROOT / "benchmarks" / "results"
    for stem, n_sections in (("bench", 6), ("bench-cuda", 2)):
        results = json.loads((results_dir / f"{stem}.json").read_text())
        text = (results_dir / f"{stem}.md").read_text()
        device = "" if stem == "bench" else " --device cuda"
        stale = f"{stem}.md is stale: run python benchmarks/bench.py --render{device}"
        assert text == markdown(results, accuracy_png(stem)), stale
        sections = text.split("\n## ")[1:]
        assert len(sections) >= n_sections
        assert sections[-1].startswith("How long each section took")  # the sections' times, last
        for sec in sections:
            assert "Measured 20" in sec or sec is sections[-1], sec.splitlines()[0]
            # exactly one blank line before the next section (the split leaves the first newline)
            assert sec.endswith("\n") and not sec.endswith("\n\n"), sec.splitlines()[0]


def test_a_section_without_a_recorded_date_says_so_and_kept_mnist_rows_keep_theirs():
    from benchmarks.bench import measured

    results = {"dates": {"overhead": "2026-12-05T10:00:00", "overhead_mnist": "2026-11-22T22:00:45"}}
    expected = "Measured 2026-12-05T10:00:00 (the MNIST UNet rows 2026-11-22T22:00:45)."
    assert measured(results, "overhead") == expected
    assert measured(results, "fk") == "Date not recorded."
    results["dates"]["overhead_mnist"] = results["dates"]["overhead"]
    assert measured(results, "overhead") == "Measured 2026-12-05T10:00:00."


def test_bench_suite_keeps_the_committed_measurement_when_a_test_fails(tmp_path, monkeypatch):
    """``make bench-suite`` with a failing test writes outputs/suite-failed.{json,md,log} and leaves
    the committed suite.{json,md} (which the README quotes) as they were; a passing run replaces them.
    The clone's ``.ci/run`` here prints a pytest summary instead of running the suite."""
    import subprocess

    from benchmarks import suite  # a namespace package, as benchmarks.bench above

    rc = {"code": 1}

    def fake_run(cmd, *args, **kwargs):  # git clone: a tree whose .ci/run fakes pytest; pip: nothing
        if cmd[:2] == ["git", "clone"]:
            ci = Path(cmd[-1]) / ".ci"
            ci.mkdir(parents=True)
            summary = "1 failed, 9 passed in 3.50s" if rc["code"] else "10 passed in 3.50s"
            failed = "FAILED tests/test_x.py::test_y - assert 1 == 2\n" if rc["code"] else ""
            (ci / "run").write_text(f"echo '1.20s call     tests/test_x.py::test_y'\nprintf '{failed}'\n"
                                    f"echo '==== {summary} ===='\nexit {rc['code']}\n")  # fmt: skip
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(suite.subprocess, "run", fake_run)
    monkeypatch.setattr(suite, "ROOT", tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    for f in ("suite.json", "suite.md"):
        (results / f).write_text("committed")
    assert suite.main(["--out", str(results)]) == 1
    assert [(results / f).read_text() for f in ("suite.json", "suite.md")] == ["committed"] * 2
    failed = json.loads((tmp_path / "outputs" / "suite-failed.json").read_text())
    assert failed["exit_code"] == 1 and failed["failed"] == ["tests/test_x.py::test_y"]
    assert failed["tests"] == {"failed": 1, "passed": 9} and failed["pytest_s"] == 3.5
    assert "tests/test_x.py::test_y" in (tmp_path / "outputs" / "suite-failed.log").read_text()
    assert "**Failed** (exit code 1" in (tmp_path / "outputs" / "suite-failed.md").read_text()
    rc["code"] = 0
    assert suite.main(["--out", str(results)]) == 0
    passed = json.loads((results / "suite.json").read_text())
    assert passed["summary"] == "10 passed in 3.50s"
    assert passed["slowest"][0]["test"] == "tests/test_x.py::test_y"


def test_bench_quick_and_device_runs_never_file_results_where_they_do_not_belong(tmp_path):
    """``--quick`` writes to outputs/bench-quick (it replaced the committed bench.json and dropped the
    sections it skips); with a device, the CPU-only sections are refused before anything runs (they
    were measured on the CPU and filed under bench-cuda.*)."""
    import subprocess

    script = str(ROOT / "benchmarks" / "bench.py")
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, script, "--quick", "--only", "loop"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    quick = json.loads((tmp_path / "outputs/bench-quick/bench.json").read_text())
    assert [r["batch"] for r in quick["loop"]] == [1, 256, 4096]
    took = quick["durations"]["loop"]  # each section is timed, with the load as it started
    assert took["s"] > 0 and took["load"] >= 0 and set(quick["durations"]) == {"loop"}
    report = (tmp_path / "outputs/bench-quick/bench.md").read_text()
    assert f"| loop | {quick['dates']['loop']} | {took['s'] / 60:.1f} min | {took['load']} |" in report
    assert report.rstrip().endswith(f"In all {took['s'] / 60:.0f} minutes.")
    assert not (tmp_path / "benchmarks").exists()
    res = subprocess.run([sys.executable, script, "--device", "cuda", "--only", "overhead,accuracy,mnist"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert res.returncode != 0 and "section(s) ['accuracy', 'mnist'] run on the CPU only" in res.stderr
    assert not (tmp_path / "outputs/bench-cuda").exists() and not (tmp_path / "benchmarks").exists()
