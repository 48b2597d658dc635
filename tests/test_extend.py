"""experiments/extend.py: more seeds for some methods of a committed reproduction, whose rows are
kept on main between sessions and added to the committed summary once all are in."""

import csv
import re
import shutil

import pytest

from experiments import extend

T1 = ("table1-fks", ["BoN-SDE", "BoN-GLASS (ddpm)"])  # variants, one row per job
T4 = ("table4-sampling", [])  # no variants, one row per kernel of a job


def _committed(name):
    return extend.read_rows(extend.RESULTS / name / "large" / "summary.csv")


def _first(name, methods):
    """The first seed not committed for ``methods`` (all rows without variants): the new ones follow."""
    rows = [r for r in _committed(name) if not methods or r.get("variant") in methods]
    return 1 + max(int(r["seed"]) for r in rows)


def _seed(overrides):
    return int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])


@pytest.mark.parametrize("name, methods", [T1, T4])
def test_the_rerun_seed_is_the_committed_job_exactly(name, methods):
    """The new jobs are the committed jobs with another seed: the check seed's overrides are the
    committed row's, character for character, so its rerun tests the same configuration."""
    first = _first(name, methods)
    wanted = extend.wanted(name, "large", first, first + 2, methods)
    assert len(wanted) == max(len(methods), 1) * 3
    committed = {(r.get("variant"), int(r["seed"])): r["overrides"] for r in _committed(name)}
    for ov, labels in wanted:
        seed = _seed(ov)
        assert seed in (extend.CHECK_SEED, first, first + 1)
        assert (" ".join(ov) == committed.get((labels.get("variant"), seed))) == (seed == extend.CHECK_SEED)


def _pending(tmp_path, monkeypatch, name, methods, change_check=None, first=None):
    """The committed large summary in tmp_path, and saved rows for the next two seeds (or two from
    ``first``): the check seed's rows copied from the committed ones (``change_check`` edits them), the
    new seeds' from seed 1's."""
    first = _first(name, methods) if first is None else first
    results = tmp_path / "results"
    shutil.copytree(extend.RESULTS / name / "large", results / name / "large")
    monkeypatch.setattr(extend, "RESULTS", results)
    monkeypatch.setattr(extend, "PENDING", tmp_path / "pending")
    monkeypatch.setattr(extend, "RUNS", tmp_path / "runs")  # none: only the rows saved here
    committed = {}
    for r in _committed(name):
        committed.setdefault((r.get("variant"), int(r["seed"])), []).append(r)
    rows = []
    for ov, labels in extend.wanted(name, "large", first, first + 2, methods):
        seed = _seed(ov)
        for row in committed[(labels.get("variant"), seed if seed == extend.CHECK_SEED else 1)]:
            row = dict(row)
            if seed != extend.CHECK_SEED:  # a job's rows have its own columns only (collect's)
                row = {k: v for k, v in row.items() if v != ""}
                row.update(
                    seed=str(seed), job=f"000-new{seed}{labels.get('variant')}", overrides=" ".join(ov)
                )
            elif change_check:
                change_check(row)
            rows.append(row)
    extend.write_csv(extend.pending_file(name, "large"), rows)
    return results / name / "large" / "summary.csv"


def _merge(name, methods, first=None, more=0):
    first = _first(name, methods) if first is None else first
    args = dict(name=name, scale="large", first=first, stop=first + 2 + more, methods=methods)
    extend.merge(type("A", (), args))


@pytest.mark.parametrize("name, methods", [T1, T4])
def test_merge_adds_the_new_rows_in_the_full_sweeps_order(tmp_path, monkeypatch, capsys, name, methods):
    summary = _pending(tmp_path, monkeypatch, name, methods)
    before = _committed(name)
    _merge(name, methods)
    with summary.open(newline="") as f:
        after = list(csv.DictReader(f))
    per_job = len(before) // len({r["job"] for r in before})  # kernels per job
    assert len(after) == len(before) + max(len(methods), 1) * 2 * per_job
    order = list(extend.load(name)["scales"]["large"].get("variants") or [None])
    keys = [(order.index(r.get("variant")), int(r["seed"])) for r in after]
    assert keys == sorted(keys)
    jobs = list(dict.fromkeys(r["job"] for r in after))
    assert [j.split("-")[0] for j in jobs] == [f"{i:03d}" for i in range(len(jobs))]
    assert len(jobs) == len(set(keys)) and all(keys.count(k) == per_job for k in keys)
    assert {r["job"].split("-", 1)[1] for r in before} < {j.split("-", 1)[1] for j in jobs}
    checked = max(len(methods), 1) * per_job
    assert f"seed 0 rerun: {checked} rows reproduce the committed ones" in capsys.readouterr().out


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(reward=str(float(r["reward"]) + 1e-3)), "rerun reward"),
    (lambda r: r.update(sampler="ode M=3"), r"no committed row of this method, seed and kernel"),
])  # fmt: skip
def test_merge_refuses_a_rerun_unlike_the_committed_job(tmp_path, monkeypatch, edit, message):
    summary = _pending(tmp_path, monkeypatch, *T1, change_check=edit)
    text = summary.read_text()
    with pytest.raises(SystemExit, match=message):
        _merge(*T1)
    assert summary.read_text() == text  # nothing written
    with pytest.raises(SystemExit, match=message):  # and save says so as soon as the rerun is in
        extend.save(type("A", (), dict(name="table1-fks", scale="large")))
    assert len(extend.read_rows(extend.pending_file("table1-fks", "large"))) == 2 * 3  # rows kept


def test_a_rerun_under_another_config_hash_with_the_same_overrides_and_numbers_merges(tmp_path, monkeypatch):
    """A default added to conf/ since the committed run (keeping the old behaviour) changes every job's
    config hash: the rerun still checks by its overrides and numbers, and the new rows keep their own."""
    summary = _pending(tmp_path, monkeypatch, *T1, change_check=lambda r: r.update(job="000-0123456789ab"))
    _merge(*T1)
    assert "0123456789ab" not in summary.read_text()  # the rerun is a check: its row is not merged


def test_merge_refuses_seeds_that_leave_a_gap(tmp_path, monkeypatch):
    """Seeds 100 and 101 after the committed ones would name the jobs unlike the full sweep's."""
    last = _first(*T1) - 1
    summary = _pending(tmp_path, monkeypatch, *T1, first=100)
    text = summary.read_text()
    seeds = rf"\[0, 1, .*, {last}, 100, 101\]"
    with pytest.raises(SystemExit, match=rf"'BoN-SDE': seeds would be {seeds}, not 0..101"):
        _merge(*T1, first=100)
    assert summary.read_text() == text


def test_merge_refuses_a_new_job_with_another_column_set(tmp_path, monkeypatch):
    summary = _pending(tmp_path, monkeypatch, *T1)
    rows = extend.read_rows(extend.pending_file("table1-fks", "large"))
    rows[-1]["new_metric"] = "1.0"  # the code now writes a column the committed jobs lack
    extend.write_csv(extend.pending_file("table1-fks", "large"), rows)
    with pytest.raises(SystemExit, match="not a kernel or the columns of the committed 'BoN-GLASS"):
        _merge(*T1)
    assert "new_metric" not in summary.read_text()


def test_merge_refuses_a_table4_rerun_with_another_fid(tmp_path, monkeypatch):
    edit = lambda r: r.update(fid=str(float(r["fid"]) * 1.001)) if r["sampler"].startswith("sde") else None  # noqa: E731
    _pending(tmp_path, monkeypatch, *T4, change_check=edit)
    with pytest.raises(SystemExit, match=r"\('', 0, 'sde M=10'\): rerun fid"):
        _merge(*T4)


def test_merge_waits_for_every_planned_job(tmp_path, monkeypatch):
    summary = _pending(tmp_path, monkeypatch, *T1)
    text = summary.read_text()
    with pytest.raises(SystemExit, match="2 of 8 jobs have no saved row yet"):
        _merge(*T1, more=1)
    assert summary.read_text() == text


@pytest.mark.parametrize("name, which", [("fig2-posterior", "its jobs"),
                                         ("inverse", "method 'guidance, flow'")])
def test_a_definition_that_sweeps_more_than_the_seed_is_refused(name, which):
    """A summary row is known by its method, seed and kernel, and ``run`` extends the first job of each
    method: a definition that also sweeps t (fig2-posterior) or the problem (inverse) would extend one
    of its jobs per method and collide in the merge. It is refused before anything runs."""
    from experiments.extend import wanted

    with pytest.raises(SystemExit, match=f"sweeps more than the seed for {re.escape(which)}"):
        wanted(name, "small", 1, 2, [])
    assert len(wanted("table1-fks", "small", 1, 3, [])) == 7 * 3  # one job per method and seed: extended


def test_run_reports_the_jobs_that_failed(tmp_path, monkeypatch, capsys):
    """A sweep goes on past a failed job; ``run`` says which failed and why, and exits 1 (it printed
    nothing: a session once lost 31 jobs to a config edited under the sweep without a word)."""
    import argparse

    import glass.experiment
    import glass.sweep

    monkeypatch.setattr(extend, "PENDING", tmp_path / "pending")
    monkeypatch.setattr(extend, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(glass.experiment, "prepare_jobs", lambda overrides: overrides)
    monkeypatch.setattr(glass.experiment, "release", lambda jobs: None)
    failures = [("003-abc", "RunFailed: the job's config changed since the sweep was planned")]
    monkeypatch.setattr(glass.sweep, "sweep", lambda jobs, where, **kw: (where, [], failures))
    args = argparse.Namespace(name="table4-sampling", scale="large", first=32, stop=34, methods=[])
    with pytest.raises(SystemExit) as stop:
        extend.run(args)
    assert stop.value.code == 1
    assert "003-abc failed: RunFailed: the job's config changed" in capsys.readouterr().out
    monkeypatch.setattr(glass.sweep, "sweep", lambda jobs, where, **kw: (where, [], []))
    extend.run(args)  # no failure: returns
