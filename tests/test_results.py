"""Committed results stay true: the README's result tables equal what their result files generate,
and one committed experiment, rerun at CI size, still gives its committed numbers."""

import json
import math
import os
import shutil

import pytest

from experiments import readme_results, regenerate


def test_readme_tables_are_generated_from_the_committed_result_files():
    """Every <!-- results: ... --> block of README.md is what python -m experiments.readme_results
    writes from experiments/results/ (edit the results, not the README)."""
    text = (readme_results.ROOT / "README.md").read_text()
    blocks = readme_results.MARK.findall(text)
    assert len(blocks) >= 9  # the reproduction table and the measured tables
    _, stale = readme_results.update(text)
    assert not stale, f"README.md disagrees with {stale} (python -m experiments.readme_results)"


def test_readme_tests_paragraph_quotes_the_committed_suite_measurement():
    """The README's Tests paragraph (count, skips, minutes, date, memory) is the last ``make
    bench-suite`` measurement (benchmarks/results/suite.json), not typed from memory."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    suite = json.loads((root / "benchmarks/results/suite.json").read_text())
    counts = {w: re.search(rf"(\d+) {w}", suite["summary"]) for w in ("passed", "skipped")}
    passed, skipped = (int(m[1]) if m else 0 for m in counts.values())  # "0 skipped" is not printed
    text = " ".join((root / "README.md").read_text().split())
    got = re.search(r"`make test` runs pytest \((\d+) tests, (\d+) skipped; ([\d.]+) minutes on 2 cores from "
                    r"a clean clone, install included, ([\d.]+) of them in pytest; `make bench-suite`, "
                    r"`benchmarks/results/suite.md`, (\S+ \d\d:\d\d)", text)  # fmt: skip
    assert got, "the README's Tests paragraph lost its measured first sentence"
    assert (int(got[1]), int(got[2])) == (passed, skipped)
    assert float(got[3]) == round(suite["wall_s"] / 60, 1)
    assert float(got[4]) == round(suite["pytest_s"] / 60, 1)
    assert got[5] == suite["machine"]["date"][:16].replace("T", " ")
    assert f"whose load was {suite['machine']['load_1min_before']:.1f} as it started" in text
    assert f"{suite['max_rss_one_process_gb']:.2f} GB resident" in text
    assert f"{suite['peak_tree_pss_gb']:.2f} GB (proportional" in text


def test_every_committed_result_file_is_written_by_make_results():
    """Each file in experiments/results/ is written by a ``make results`` script (or is a training
    record): a committed file nothing regenerates would go stale silently."""
    assert set(regenerate.WRITES) == {*regenerate.SCRIPTS, "default_run"}, "declare what each script writes"
    written = {stem for stems in regenerate.WRITES.values() for stem in stems}
    known = written | set(regenerate.TRAINING) | {regenerate.TIMES.stem}  # the last: make results' timings
    orphans = [f.name for f in (regenerate.ROOT / "experiments" / "results").iterdir()
               if f.is_file() and f.name.rsplit(".", 1)[0] not in known]
    assert not orphans, f"committed results no make results script writes: {orphans}"


def test_a_results_block_with_caption_carries_the_paragraph_after_its_table(tmp_path, monkeypatch):
    monkeypatch.setattr(readme_results, "ROOT", tmp_path)
    table, caption = "| a |\n|---|\n| 1 |\n", "seeds [0, 1]; floor 0.02.\nmore.\n"
    (tmp_path / "r.md").write_text(f"{table}\n{caption}\nlater\n\n| b |\n")
    assert readme_results.render("r.md table=1") == table
    assert readme_results.render("r.md table=1 caption") == f"{table}\n{caption}"
    with pytest.raises(KeyError, match="no paragraph after table 2"):
        readme_results.render("r.md table=2 caption")
    with pytest.raises(KeyError, match="unknown option 'captions'"):
        readme_results.render("r.md captions")


def test_a_committed_large_scale_run_gets_its_own_row(tmp_path, monkeypatch):
    """Where experiments/results/reproduce/NAME/large/summary.csv exists (a --scale large run), the
    reproduction table gains a row for it after the small-scale one, computed from that file alone:
    here Table 5's small-scale summary with one seed dropped stands in for a large-scale run."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(readme_results.RESULTS / "reproduce", results / "reproduce",
                    ignore=shutil.ignore_patterns("large"))  # only the stand-in below
    lines = (results / "reproduce" / "table5-guidance" / "summary.csv").read_text().splitlines(True)
    seed = lines[0].rstrip("\n").split(",").index("seed")
    kept = [lines[0], *(line for line in lines[1:] if line.split(",")[seed] != "15")]  # no commas in names
    (results / "reproduce" / "table5-guidance" / "large").mkdir()
    (results / "reproduce" / "table5-guidance" / "large" / "summary.csv").write_text("".join(kept))
    monkeypatch.setattr(readme_results, "RESULTS", results)
    rows = readme_results.paper_vs_ours().splitlines()
    titles = [r.split(" | ")[0] for r in rows[2:]]
    at = titles.index("| Table 5, guidance")
    assert titles[at + 1] == "| Table 5, guidance, `--scale large` (`mnist_v4`)"
    assert "(16 seeds × 192 outputs)" in rows[2 + at] and "(15 seeds × 192 outputs)" in rows[3 + at]
    assert sum("--scale large" in t for t in titles) == 1  # no large run of the others committed here


def test_a_caption_names_the_methods_that_ran_more_seeds():
    """Where a variant's own sweep gave two methods more seeds, the README caption says so instead of
    quoting one method's count for all."""
    s = {"flow": (0, 1, 16), "BoN-SDE": (0, 1, 64), "BoN-GLASS (ddpm)": (0, 1, 64), "x": (0, 1, 16)}
    text = readme_results.seeds_text(s, {"BoN-GLASS (ddpm)": "BoN-GLASS"})
    assert text == "16 seeds (64 for BoN-SDE, BoN-GLASS)"
    assert readme_results.seeds_text({"a": (0, 1, 24), "b": (0, 1, 24)}) == "24 seeds"
    assert readme_results.seeds_text({"a": (0, 1, 1)}) == "1 seed"


def test_readme_quotes_each_shipped_checkpoints_quality_file():
    """The README's bullet on each shipped MNIST flow checkpoint quotes its quality file's FID, floor and
    ratio in every feature space it measured (one decimal), so a regenerated file cannot leave the
    prose behind."""
    import json
    import re

    text = (readme_results.ROOT / "README.md").read_text()
    shipped = text[text.index("\nShipped:\n"):text.index("![MNIST flow samples")]
    bullet_re = re.compile(r"^- `glass/assets/(\w+)`(.*?)(?=^- |\Z)", re.M | re.S)
    bullets = {name: " ".join(body.split()) for name, body in bullet_re.findall(shipped)}
    files = sorted(readme_results.RESULTS.glob("mnist_flow*_quality*.json"))
    assert len(files) >= 4
    for f in files:
        result = json.loads(f.read_text())
        checkpoint = result["checkpoint"]
        bullet = bullets[checkpoint.removeprefix("glass/assets/").removesuffix(".safetensors")]
        for space, row in result["fid"].items():
            fid, floor = row["samples"], row["floor"]
            missing = [x for x in (f"{fid:.1f}", f"{floor:.1f}", f"{fid / floor:.1f}×") if x not in bullet]
            assert not missing, f"README's bullet on {checkpoint} lacks {missing} ({f.name}, {space})"


def test_the_interval_widens_with_few_seeds_as_students_t_does():
    """t quantiles (97.5 %) from the tables: a 95 % interval of a mean over 3 seeds is ± 4.30 standard
    errors, not ± 2; one seed has none."""
    from glass.report import beyond, t_critical

    for n, t in [(2, 12.706), (3, 4.303), (8, 2.365), (16, 2.131), (24, 2.069), (1001, 1.962)]:
        assert t_critical(n) == pytest.approx(t, abs=1e-3)
    assert math.isnan(t_critical(1))
    assert not beyond(1.0, 0.4, 3) and beyond(1.0, 0.4, 30) and beyond(-1.0, 0.4, 30)
    assert not beyond(1.0, float("nan"), 1)
    d = (1.0, 0.4, 3)  # 2.5 standard errors: resolved at 2, not at the 95 % interval of 3 seeds
    verdict = readme_results.paired_verdict(d, "a above b")  # interval 1 ± 4.303 × 0.4
    assert "not resolved" in verdict and "95 % interval -0.72 to 2.72; 6 seeds for 80 % power" in verdict
    assert "confirmed" in readme_results.paired_verdict((1.0, 0.4, 30), "a above b")


@pytest.mark.parametrize("directory,name,scale", [pytest.param(*c, id=f"{c[1]}-{c[2]}")
                                                  for c in regenerate.committed_reports()])
def test_a_committed_report_is_what_its_committed_summary_draws(directory, name, scale, tmp_path):
    """Every committed NAME.md is what the report code draws from the committed summary.csv beside it
    and the current definition (``python -m experiments.regenerate --reports`` redraws them), so a
    change to the report's rules cannot leave stale verdicts in committed reports."""
    from glass.report import report_from_summary

    shutil.copy2(directory / "summary.csv", tmp_path / "summary.csv")
    (md,) = report_from_summary(tmp_path, name, scale, draw=False)
    committed = (directory / f"{name}.md").read_text()
    stale = f"{directory}/{name}.md is stale: python -m experiments.regenerate --reports"
    assert md.read_text() == committed, stale


def test_each_committed_summary_holds_the_jobs_its_definition_runs():
    """Every committed summary.csv holds one job per job of its definition at that scale, and no other:
    a seed added to a definition without its rows (or an extension merged into a summary while the
    definition still runs fewer seeds, which a later regeneration would silently undo) fails here.
    The report from a summary counts the definition's jobs, so a missing one also shows there."""
    import csv

    from glass.definitions import job_overrides, load

    for directory, name, scale in regenerate.committed_reports():
        jobs, labels = job_overrides(load(name), scale, [])
        want = sorted((lab.get("variant", ""), " ".join(ov)) for ov, lab in zip(jobs, labels))
        with (directory / "summary.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [" ".join(o for o in r["overrides"].split() if not o.startswith("out_dir=")) for r in rows]
        got = {(r.get("variant", ""), ov) for r, ov in zip(rows, kept)}
        assert sorted(got) == want, f"{directory}: its jobs are not those of {name} --scale {scale}"
        assert len({r["job"] for r in rows}) == len(want), f"{directory}: a job under two names"


def test_a_report_from_a_summary_counts_the_jobs_its_definition_runs(tmp_path):
    """fig7-rho's summary without its last job: the report says 79 of 80 jobs (it counted the file's
    own jobs, "79 of 79", so a lost job did not show); with one seed it says its errors are the jobs'
    own, not over seeds."""
    import csv

    from glass.report import report_from_summary

    src = regenerate.ROOT / "experiments" / "results" / "reproduce" / "fig7-rho" / "summary.csv"
    with src.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with (tmp_path / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["job"] != rows[-1]["job"])
    (md,) = report_from_summary(tmp_path, "fig7-rho", "small", draw=False)
    jobs = len({r["job"] for r in rows})
    text = md.read_text()
    assert f"{jobs - 1} of {jobs} jobs finished; mean ± standard error over repeated jobs (seeds)" in text
    # one seed: a value's ± is the job's own error over its samples (it said "over seeds" regardless)
    with (tmp_path / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["seed"] == "0")
    (md,) = report_from_summary(tmp_path, "fig7-rho", "small", draw=False)
    assert "one seed: each value ± the job's own standard error over its samples" in md.read_text()


def test_a_report_draws_its_paired_differences_where_seeds_give_intervals(tmp_path):
    """A definition with report.paired gets NAME-paired.png (each pair's 95 % interval) linked from its
    markdown; a single seed has no intervals, so neither the figure nor the link."""
    import csv

    from glass.report import report_from_summary

    src = readme_results.summary_path("table4-sampling")
    many, one = tmp_path / "many", tmp_path / "one"
    many.mkdir()
    one.mkdir()
    shutil.copy2(src, many / "summary.csv")
    written = report_from_summary(many, "table4-sampling")
    png = many / "table4-sampling-paired.png"
    assert png in written and png.stat().st_size > 10_000
    assert "![paired differences](table4-sampling-paired.png)" in (many / "table4-sampling.md").read_text()
    with src.open() as f:
        rows = list(csv.DictReader(f))
    with (one / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["seed"] == "0")
    written = report_from_summary(one, "table4-sampling")
    assert not (one / "table4-sampling-paired.png").exists() and all("paired" not in f.name for f in written)
    assert "paired differences](" not in (one / "table4-sampling.md").read_text()
    assert "| glass − sde |" in (one / "table4-sampling.md").read_text()  # the table, without intervals


def test_a_report_from_a_summary_needs_the_summary(tmp_path):
    from glass.config import UserError
    from glass.report import report_from_summary

    with pytest.raises(UserError, match="no summary.csv in"):
        report_from_summary(tmp_path, "fig7-rho")
    with pytest.raises(UserError, match="fig7-rho has no scale 'small-1a2b'; choose from: small, paper"):
        report_from_summary(tmp_path, "fig7-rho", "small-1a2b")  # a directory of extra overrides
    (tmp_path / "summary.csv").write_text("job,seed\n")
    with pytest.raises(UserError, match="has no rows"):
        report_from_summary(tmp_path, "fig7-rho")


def test_seeds_for_power_is_the_paired_t_test_sample_size():
    """The planning number of an unresolved verdict against the textbook sample sizes of a two-sided
    paired t test at alpha 0.05 and 80 % power (Cohen's d_z 0.2 / 0.5 / 0.8 / 1.0 need 199 / 34 / 15 /
    10 pairs, as G*Power gives), whatever seed count the spread was measured on; the count is the
    first at which the power reaches 80 % (one fewer falls short)."""
    import numpy as np

    from glass.report import seeds_for_power, seeds_needed, t_critical

    for d, n in [(0.2, 199), (0.5, 34), (0.8, 15), (1.0, 10)]:
        for seeds in (3, 24):  # standard deviation 1: standard error 1/√seeds
            assert seeds_for_power(d, 1 / math.sqrt(seeds), seeds) == n
            assert seeds_for_power(-d, 1 / math.sqrt(seeds), seeds) == n

    def power(m, d, draws=200_000):  # Monte Carlo: how often m paired differences N(d, 1) resolve
        x = np.random.default_rng(0).normal(d, 1.0, size=(draws, m))
        t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(m))
        return float((np.abs(t) > t_critical(m)).mean())

    assert power(34, 0.5) > 0.8 > power(30, 0.5)
    # a large effect measured on 2 seeds (unresolved there: t = 12.7): 3 seeds have about 95 % power
    # (the lower tail through scipy's nct.cdf is NaN at such noncentralities and once skipped 3)
    d = 4.429154522899208
    assert power(3, d) > 0.9 > 0.8 > power(2, d) and seeds_for_power(d, 1 / math.sqrt(2), 2) == 3
    assert seeds_for_power(0.0, 0.1, 24) is None and seeds_for_power(1.0, float("nan"), 1) is None
    assert seeds_for_power(1e-4, 1.0, 24) is None  # beyond the cap (100,000 seeds)
    assert seeds_for_power(0.2, 1 / math.sqrt(24), 24, cap=199) == 199  # the cap itself is searched
    assert seeds_for_power(0.2, 1 / math.sqrt(24), 24, cap=198) is None
    # other powers start their own search (d_z 0.5: 44 pairs at 90 %, 18 at 50 %, checked by Monte Carlo)
    assert seeds_for_power(0.5, 0.2, 25, power=0.9) == 44
    assert seeds_for_power(0.5, 0.2, 25, power=0.5) == 18 and power(18, 0.5) > 0.5 > power(17, 0.5)
    assert seeds_needed(0.5, 0.2, 25) == "34" and seeds_needed(1e-4, 1.0, 24) == "more than 100,000"
    assert seeds_needed(0.0, 0.2, 25) is None and seeds_needed(1.0, float("nan"), 1) is None
    assert seeds_needed(1.0, float("inf"), 25) is None  # no finite spread: nothing to plan


def test_interval_text_uses_the_standard_errors_digits():
    from glass.report import interval_text

    assert interval_text(-1.5057, 0.0652, 0.3797) == "-1.51 to 0.07"
    assert interval_text(-0.00001, 0.0109, 0.0023) == "0.0000 to 0.0109"  # no negative zero
    assert interval_text(-5609.2, -5528.8, 20.0) == "-5609 to -5529"


def test_paired_verdicts_take_the_difference_within_each_seed():
    """Seed-to-seed variation shared by both samplers cancels: a is 1 below b in every seed, although
    the seeds differ by 10, so "a below b" is confirmed on the paired difference."""
    rows = [{"seed": s, "sampler": k, "fid": 10.0 * s + (0.0 if k == "a" else 1.0) + 0.1 * (s % 2)}
            for s in range(4) for k in ("a", "b")]  # fmt: skip
    from glass.report import paired_difference

    d = paired_difference(rows, "fid", "a", "b", "sampler")
    assert d == pytest.approx((-1.0, 0.0, 4))
    below = readme_results.paired_verdict(d, "a below b", higher_is_better=False)
    assert below.startswith("a below b: confirmed")
    assert "contradicted" in readme_results.paired_verdict(d, "a above b")
    noisy = paired_difference([*rows, {"seed": 9, "sampler": "a", "fid": 5.0},
                               {"seed": 9, "sampler": "b", "fid": 1.0}], "fid", "a", "b", "sampler")
    assert noisy[2] == 5 and "not resolved" in readme_results.paired_verdict(noisy, "a below b", False)
    assert "no standard error" in readme_results.paired_verdict((-1.0, float("nan"), 1), "a below b", False)


def test_a_table_cell_over_fewer_seeds_says_its_count():
    """A value NaN in some seeds is left out of its cell's mean: the cell says over how many jobs it
    is taken (``(n=2)``), where the others need no count; a missing cell is a dash."""
    from glass.report import markdown_table

    rows = [{"job": f"{s}-{k}", "seed": s, "sampler": k, "pearson": math.nan if (k, s) == ("b", 0) else s}
            for s in range(3) for k in ("a", "b")]  # fmt: skip
    rows.append({"job": "3-c", "seed": 3, "sampler": "c", "rmse": 1.0})
    table = markdown_table(rows, ["sampler"], "pearson")
    assert "| a | 1.0000 ± 0.5774 |" in table and "| b | 1.5000 ± 0.5000 (n=2) |" in table
    assert "| c |" not in table


def test_readme_verdicts_take_the_better_direction_from_the_value():
    """FID is a distance (lower is better), Pearson a score: glass_vs_sde reads the direction from
    glass.report.LOWER_IS_BETTER, so GLASS 1 lower in every seed confirms "below" for FID and
    contradicts "above" for Pearson."""
    rows = [{"seed": s, "sampler": f"{k} M=2", v: 10.0 * s + (0.0 if k == "glass" else 1.0) + 0.1 * (s % 2)}
            for s in range(4) for k in ("glass", "sde") for v in ("fid", "pearson")]  # fmt: skip
    assert readme_results.glass_vs_sde(rows, "fid", 2).startswith("M = 2: confirmed")
    assert readme_results.glass_vs_sde(rows, "pearson", 2).startswith("M = 2: **contradicted**")


def test_paired_table_of_a_report_and_rows_it_cannot_pair():
    """The reports' paired table: the same numbers, the direction named; a seed with two rows of one
    method (another swept key) has no single pairing and says so instead of picking one."""
    from glass.report import paired_table

    rows = [{"seed": s, "variant": k, "reward": 10.0 * s + (1.0 if k == "a" else 0.0) + 0.1 * (s % 2)}
            for s in range(4) for k in ("a", "b")]  # fmt: skip
    table = paired_table(rows, "reward", "variant", [["a", "b"], ["b", "c"]])
    assert "| a − b | 1.0000 ± 0.0000 | 4 | 1.0000 to 1.0000 | yes: a higher | — |" in table
    assert "| b − c | — (no seed with both 'b' and 'c') | 0 | — | — | — |" in table
    noisy = [{"seed": s, "variant": "a", "reward": float(s)} for s in (1, 2, 3)]
    noisy += [{"seed": s, "variant": "b", "reward": 0.0} for s in (1, 2, 3)]  # a − b: 1, 2, 3
    # mean 2, standard error 1/√3, 95 % interval 2 ± 4.3027/√3 = 2 ± 2.4841: contains 0 (printed at
    # the standard error's two significant digits)
    table = paired_table(noisy, "reward", "variant", [["a", "b"]])
    assert "| a − b | 2.0000 ± 0.5774 | 3 | -0.48 to 4.48 | no | 5 |" in table  # d_z = 2: 5 seeds
    extra = {"seed": 0, "variant": "a", "reward": 3.0}
    twice = paired_table([*rows, extra], "reward", "variant", [["a", "b"]])
    assert "seed 0 has several reward values for variant = a" in twice and "yes" not in twice


def rerun(name: str, variant: str, tmp_path) -> tuple[dict, dict]:
    """(the seed-0 job of ``variant`` in definition ``name``, rerun at its small scale; its committed row)."""
    from glass.definitions import load
    from glass.experiment import run
    from glass.reproduce import job_overrides

    jobs, labels = job_overrides(load(name), "small", [f"out_dir={tmp_path}", "seed=0"])
    (overrides,) = [ov for ov, lab in zip(jobs, labels) if lab.get("variant") == variant]
    _, rows = run(overrides)
    committed = [r for r in readme_results.summary(name) if r["variant"] == variant and r["seed"] == 0]
    assert len(committed) == 1 and len(rows) == 1
    return rows[0], committed[0]


@pytest.mark.parametrize("variant", ["rho=0.4", "ddpm^1", "SDE", "ODE"])
def test_fig7_rho_rerun_at_ci_size_matches_its_committed_numbers(variant, tmp_path):
    """fig7-rho's seed-0 job of ``variant``, rerun from its definition, gives the energy distance its
    committed summary.csv holds (relative tolerance 1e-6: CPU float64 arithmetic, any thread count), so
    a change that moves the numbers cannot leave the committed results stale silently (make results)."""
    row, committed = rerun("fig7-rho", variant, tmp_path)
    assert row["energy"] == pytest.approx(committed["energy"], rel=1e-6)


def test_an_mnist_result_rerun_at_ci_size_matches_its_committed_numbers(tmp_path):
    """The same for the MNIST flow: table1-fks's seed-0 job of the flow baseline (one ODE sample per
    output, 10 NFE) gives its committed reward, so a change of the model (or of the checkpoint a
    definition names) cannot leave the committed MNIST results stale silently. float32 network: a
    tolerance of 1e-4 covers other CPUs' kernels."""
    row, committed = rerun("table1-fks", "flow (ODE, 1 sample)", tmp_path)
    assert row["reward"] == pytest.approx(committed["reward"], rel=1e-4)


def test_table4_inception_scores_the_very_samples_of_table4_seed_0():
    """table4-inception reruns Table 4's seed 0 with both feature spaces: its classifier FID must be
    that seed's committed FID for every sampler (the same noise, the same samples); a drifted sampler
    or seed would move it by about 1 FID, far beyond the rounding allowed here."""
    seed0 = {r["sampler"]: r["fid"] for r in readme_results.summary("table4-sampling") if r["seed"] == 0}
    both = readme_results.summary("table4-inception")
    assert {r["sampler"] for r in both} == set(seed0) and len(seed0) == 4
    for r in both:
        assert r["fid"] == pytest.approx(seed0[r["sampler"]], rel=1e-4), r["sampler"]
        assert r["fid_inception"] > 0 and r["fid_n_samples"] == 2000


def test_flow_quality_writes_each_feature_space_as_soon_as_it_is_scored(tmp_path, monkeypatch):
    """experiments/flow_quality.py rewrites its json / md / png after each feature space, so a long
    Inception pass that dies (here: at once) still leaves the classifier-feature FID it measured, and
    the table's ratio is FID / floor of that file."""
    import json
    import re

    from experiments import flow_quality
    from glass.metrics.fid import FID

    def fid(features):
        if features == "inception":
            raise RuntimeError("Inception pass interrupted")
        return FID(features=features, n_reference=200, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(flow_quality, "OUT", tmp_path)
    monkeypatch.setattr(flow_quality, "FID", fid)
    with pytest.raises(RuntimeError, match="interrupted"):
        flow_quality.main(["--n", "16", "--batch", "16", "--features", "mnist", "inception", "--name", "q"])
    result = json.loads((tmp_path / "q.json").read_text())
    assert list(result["fid"]) == ["mnist"] and result["n"] == 16 and result["nfe"] == 50
    row = result["fid"]["mnist"]
    assert row["n"] == 16 and row["samples"] > 0 and row["floor"] > 0
    md = (tmp_path / "q.md").read_text()
    table = re.search(r"^\| mnist \| 16 \| ([\d.]+) \| ([\d.]+) ± ([\d.]+) \| 5 \| ([\d.]+) \|$", md, re.M)
    assert table and float(table[4]) == pytest.approx(row["samples"] / row["floor"], abs=0.006)
    assert (tmp_path / "q.png").stat().st_size > 2_000


def test_flow_quality_grid_only_redraws_the_runs_first_samples(tmp_path, monkeypatch, capsys):
    """``--grid-only`` redraws a result's sample grid from its JSON (checkpoint, solver) without
    sampling the whole run: the same first samples as the run drew, the json / md untouched, the title
    naming the checkpoint and each FID beside its floor."""
    from experiments import flow_quality
    from glass.metrics.fid import FID

    monkeypatch.setattr(flow_quality, "OUT", tmp_path)
    monkeypatch.setattr(flow_quality, "STEPS", {"euler": 1})  # 5 NFE a sample: a test, not a measurement
    monkeypatch.setattr(flow_quality, "FID", lambda features: FID(features="mnist", n_reference=200,
                                                                  cache_dir=str(tmp_path / "cache")))
    drawn = []
    write = flow_quality.write
    monkeypatch.setattr(flow_quality, "write", lambda out, x, name: (drawn.append(x), write(out, x, name)))
    flow_quality.main(["--n", "12", "--batch", "8", "--features", "mnist", "--name", "q",
                       "--floor-subsets", "1"])  # fmt: skip
    files = {f: (tmp_path / f"q.{f}").read_bytes() for f in ("json", "md")}
    out = flow_quality.main(["--grid-only", "--name", "q"])  # batches of 8 from the JSON: 8 + 4 rows
    assert drawn[1].shape == (12, 1, 28, 28) and drawn[1].equal(drawn[0])
    monkeypatch.setattr(flow_quality, "GRID", 9)  # a grid reaching into the second batch, not to its end
    flow_quality.main(["--grid-only", "--name", "q"])
    assert drawn[2].shape == (9, 1, 28, 28) and drawn[2].equal(drawn[0][:9])
    assert {f: (tmp_path / f"q.{f}").read_bytes() for f in ("json", "md")} == files
    row = out["fid"]["mnist"]
    assert flow_quality.grid_title(out) == (
        "mnist_flow, 12,682 training steps\nODE, 5 × 1 Euler steps (5 NFE)\n"
        f"classifier FID {row['samples']:.1f} (train-vs-test floor {row['floor']:.1f}), 12 samples"
    )
    with pytest.raises(SystemExit, match="sampled on cpu; redraw it with --device cpu"):
        flow_quality.main(["--grid-only", "--name", "q", "--device", "cuda"])
    with pytest.raises(SystemExit, match="does not exist"):
        flow_quality.main(["--grid-only", "--name", "missing"])
    with pytest.raises(SystemExit) as stop:  # argparse's error: exit 2, one line naming both options
        flow_quality.main(["--grid-only", "--floor-only", "--name", "q"])
    assert stop.value.code == 2
    assert "--grid-only and --floor-only redraw different things" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "line"), [
    (["--n", "0"], "--n must be at least 2, got 0"),
    (["--n", "1"], "--n must be at least 2, got 1"),
    (["--batch", "0"], "--batch must be at least 1, got 0"),
    (["--floor-subsets", "0"], "--floor-subsets must be at least 1, got 0"),
    (["--n", "3000", "--inception-n", "1999"], "--inception-n must be between 2000 and --n (3000), got 1999"),
])  # fmt: skip
def test_flow_quality_refuses_bad_sizes_before_loading_anything(argv, line, monkeypatch, capsys):
    """Sizes are checked before the model is loaded or a sample drawn: exit 2, one line naming the
    option, the value and what is allowed (``--n 0`` used to fail deep inside the FID)."""
    from experiments import flow_quality

    monkeypatch.setattr(flow_quality, "load_flow", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as stop:
        flow_quality.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(line) and "Traceback" not in "\n".join(err)


def test_flow_quality_floor_is_random_training_subsets_and_floor_only_keeps_samples(tmp_path, monkeypatch):
    """The floor is the mean of seeded random n-subsets of the training images (not the first n: the
    file's order is not random), with their standard deviation; ``--floor-only`` recomputes it in an
    existing result without sampling again and keeps the samples' FID."""
    import json
    import statistics

    from experiments import flow_quality
    from glass.data import load_mnist
    from glass.metrics.fid import FID
    from glass.models.mnist import to_data

    def fid(features):
        return FID(features="mnist", n_reference=300, cache_dir=str(tmp_path / "cache"))

    train, _ = load_mnist("train")
    f = fid("mnist")
    got = flow_quality.floor(f, train, 64, 3)
    assert len(got["floor_subsets"]) == 3 and len(set(got["floor_subsets"])) == 3
    assert got["floor"] == pytest.approx(statistics.fmean(got["floor_subsets"]))
    assert f(to_data(train[:64]))["fid"] not in got["floor_subsets"]
    assert flow_quality.floor(f, train, 64, 3) == got  # seeded
    assert len(flow_quality.floor(f, train, 64, 1)["floor_subsets"]) == 1

    monkeypatch.setattr(flow_quality, "OUT", tmp_path)
    monkeypatch.setattr(flow_quality, "FID", fid)
    stale = {"checkpoint": "c", "n": 64, "nfe": 50, "total_steps": 1,
             "fid": {"mnist": {"samples": 12.5, "floor": 99.0, "n": 64}}}  # fmt: skip
    (tmp_path / "q.json").write_text(json.dumps(stale))
    out = flow_quality.main(["--floor-only", "--name", "q", "--floor-subsets", "3"])
    row = json.loads((tmp_path / "q.json").read_text())["fid"]["mnist"]
    assert row == out["fid"]["mnist"] and row["samples"] == 12.5
    assert row["floor"] == pytest.approx(got["floor"])
    assert row["floor_subsets"] == pytest.approx(got["floor_subsets"])
    line = f"| mnist | 64 | 12.50 | {got['floor']:.2f} ± {statistics.stdev(got['floor_subsets']):.2f} | 3 |"
    assert line in (tmp_path / "q.md").read_text()
    with pytest.raises(SystemExit, match="does not exist"):
        flow_quality.main(["--floor-only", "--name", "missing"])


def test_flow_quality_heun_counts_its_nfe_and_says_so(tmp_path, monkeypatch):
    """``--method heun`` samples with 5 x 5 Heun steps: the NFE recorded is the wrapper's count (49:
    the last step, into t = 1, is Euler), the samples are generate()'s with that kernel (same FID),
    and the table's heading names the solver; the Euler default still records 50."""
    import json

    import torch

    from experiments import flow_quality
    from glass.metrics.fid import FID
    from glass.models.mnist import load_flow
    from glass.samplers import ODE, generate

    def fid(features):
        return FID(features="mnist", n_reference=200, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(flow_quality, "OUT", tmp_path)
    monkeypatch.setattr(flow_quality, "FID", fid)
    args = ["--n", "8", "--batch", "8", "--features", "mnist", "--floor-subsets", "1"]
    heun = flow_quality.main([*args, "--method", "heun", "--name", "h"])
    assert heun["nfe"] == 49 and heun["method"] == "heun"
    assert json.loads((tmp_path / "h.json").read_text())["nfe"] == 49
    assert (tmp_path / "h.md").read_text().startswith("# MNIST flow sample quality: ODE at 49 NFE (Heun) vs")
    x = generate(load_flow(None), ODE(5, "heun"), 5, n=8, generator=torch.Generator().manual_seed(0))
    assert fid("mnist")(x)["fid"] == pytest.approx(heun["fid"]["mnist"]["samples"], rel=1e-6)
    euler = flow_quality.main([*args, "--name", "e"])
    assert euler["nfe"] == 50 and euler["method"] == "euler"
    assert (tmp_path / "e.md").read_text().startswith("# MNIST flow sample quality: ODE at 50 NFE vs")
    assert euler["fid"]["mnist"]["samples"] != pytest.approx(heun["fid"]["mnist"]["samples"], rel=1e-3)


def test_the_reproduce_times_count_each_job_once_from_its_summary(tmp_path, monkeypatch):
    """The README's reproduction times are generated: each job's wall time once (a job has one row per
    kernel), summed, and the median job; only definitions with a committed summary are listed."""
    import experiments.readme_results as rr

    found = tmp_path / "summary.csv"
    found.write_text("")
    def path(name, scale="small"):
        return found if name == "fig7-rho" else tmp_path  # a directory: no committed summary

    monkeypatch.setattr(rr, "summary_path", path)
    jobs = [("a", 30.0, 0), ("a", 30.0, 0), ("b", 90.0, 1), ("c", 7200.0, 1)]
    rows = [{"job": j, "wall_time_s": w, "seed": s} for j, w, s in jobs]
    monkeypatch.setattr(rr, "summary", lambda name, scale="small": rows)
    assert rr.reproduce_times().splitlines()[2:] == ["| `fig7-rho` | 3 | 2 | 2.0 h | 1.5 min |"]


def test_make_results_time_records_each_step_and_totals_what_was_timed(tmp_path, monkeypatch):
    """A timed step is recorded beside the others (a rerun replaces only its own entry), and the
    README's total adds the reproductions' job wall times to the scripts' timed runs, naming every
    step not timed yet, so it never reads as complete when it is not."""
    import experiments.readme_results as rr

    times = tmp_path / "t.json"
    regenerate.record_time("fid_sanity", 120.0, 1.5, times)
    regenerate.record_time("fk_bias", 7200.0, 0.5, times)
    regenerate.record_time("fid_sanity", 60.0, 2.0, times)
    steps = json.loads(times.read_text())["steps"]
    assert {k: v["seconds"] for k, v in steps.items()} == {"fid_sanity": 60.0, "fk_bias": 7200.0}
    assert steps["fid_sanity"]["load"] == 2.0 and steps["fid_sanity"]["cores"] == os.cpu_count()
    monkeypatch.setattr(regenerate, "TIMES", times)
    monkeypatch.setattr(rr, "summary_path", lambda name, scale="small": times if name == "fig7-rho"
                        else tmp_path)  # fmt: skip
    rows = [{"job": j, "wall_time_s": w} for j, w in [("a", 30.0), ("a", 30.0), ("b", 30.0)]]
    monkeypatch.setattr(rr, "summary", lambda name, scale="small": rows)
    text = rr.make_results_time()
    assert "| the 1 small-scale reproductions | 60 s |" in text
    assert "| `fid_sanity` | 60 s |" in text and "| `fk_bias` | 2.0 h |" in text
    untimed = [n for n in [*regenerate.SCRIPTS, "default_run"] if n not in steps]
    assert f"In all at least 2.0 h on a CPU, and more: {len(untimed)} steps not timed yet" in text
    assert all(f"`{n}`" in text.split("not timed yet")[1] for n in untimed)
    regenerate.record_time("a script since removed", 9e9, 1.0, times)  # not a step: not in the total
    assert rr.make_results_time() == text
    regenerate.record_time("fk_bias", 7200.0, 0.5, times, ran_at="abc1234", cpu_s=10800.0)
    assert json.loads(times.read_text())["steps"]["fk_bias"]["commit"] == "abc1234"  # as it started
    assert "| `fk_bias` | 2.0 h | `make results` at abc1234" in rr.make_results_time()
    assert "load 0.5 as it started, 1.5 cores busy on average |" in rr.make_results_time()
    assert times.stat().st_mode & 0o777 == 0o644 and not list(tmp_path.glob("*.tmp"))  # none left behind
    times.write_text('{"steps": {"fid_sanity": {"sec')  # damaged: one clear error, and kept as it is
    with pytest.raises(SystemExit, match="cannot be read"):
        regenerate.record_time("fk_bias", 1.0, 1.0, times)
    assert times.read_text() == '{"steps": {"fid_sanity": {"sec'
    with pytest.raises(SystemExit, match="cannot be read"):  # before any step runs
        regenerate.main(["--only", "fid_sanity"])
