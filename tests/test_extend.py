"""experiments/extend.py: more seeds for some methods of a committed reproduction, whose rows are
kept on main between sessions and added to the committed summary once all are in."""

import csv
import shutil

import pytest

from experiments import extend

METHODS = ["BoN-SDE", "BoN-GLASS (ddpm)"]


def _committed(name="table1-fks", scale="large"):
    return extend.read_rows(extend.RESULTS / name / scale / "summary.csv")


def test_the_rerun_seed_of_each_method_is_the_committed_job_exactly():
    """The new jobs are the committed jobs with another seed: the check seed's overrides are the
    committed row's, character for character, so its rerun tests the same configuration."""
    wanted = extend.wanted("table1-fks", "large", 16, 64, METHODS)
    assert len(wanted) == 2 * (48 + 1)
    committed = {(r["variant"], int(r["seed"])): r["overrides"] for r in _committed()}
    for ov, labels in wanted:
        seed = int(next(o for o in ov if o.startswith("seed=")).split("=")[1])
        assert seed == extend.CHECK_SEED or 16 <= seed < 64
        if seed == extend.CHECK_SEED:
            assert " ".join(ov) == committed[(labels["variant"], seed)]
        else:
            assert (labels["variant"], seed) not in committed


def _pending(tmp_path, monkeypatch, change_check=None):
    """The committed Table 1 large summary in tmp_path, and saved rows for seeds 16 and 17: the check
    seed's rows copied from the committed ones (``change_check`` edits them), new seeds from seed 1's."""
    results = tmp_path / "results"
    shutil.copytree(extend.RESULTS / "table1-fks" / "large", results / "table1-fks" / "large")
    monkeypatch.setattr(extend, "RESULTS", results)
    monkeypatch.setattr(extend, "PENDING", tmp_path / "pending")
    committed = {(r["variant"], int(r["seed"])): r for r in _committed()}
    rows = []
    for ov, labels in extend.wanted("table1-fks", "large", 16, 18, METHODS):
        seed = int(next(o for o in ov if o.startswith("seed=")).split("=")[1])
        row = dict(committed[(labels["variant"], seed if seed == extend.CHECK_SEED else 1)])
        if seed != extend.CHECK_SEED:
            row.update(seed=str(seed), job=f"000-new{seed}{len(rows)}", overrides=" ".join(ov))
        elif change_check:
            change_check(row)
        rows.append(row)
    extend.write_csv(extend.pending_file("table1-fks", "large"), rows)
    return results / "table1-fks" / "large" / "summary.csv"


def _merge(stop=18):
    extend.merge(type("A", (), dict(name="table1-fks", scale="large", first=16, stop=stop, methods=METHODS)))


def test_merge_adds_the_new_rows_in_the_full_sweeps_order(tmp_path, monkeypatch, capsys):
    summary = _pending(tmp_path, monkeypatch)
    before = _committed()
    _merge()
    with summary.open(newline="") as f:
        after = list(csv.DictReader(f))
    assert len(after) == len(before) + 4
    order = list(extend.load("table1-fks")["scales"]["large"]["variants"])
    keys = [(order.index(r["variant"]), int(r["seed"])) for r in after]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [r["job"].split("-")[0] for r in after] == [f"{i:03d}" for i in range(len(after))]
    assert {r["job"].split("-", 1)[1] for r in before} < {r["job"].split("-", 1)[1] for r in after}
    assert capsys.readouterr().out.count("the rerun reproduces the committed reward") == 2


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(reward=str(float(r["reward"]) + 1e-3)), "rerun reward"),
    (lambda r: r.update(job="032-000000000000"), "config hash differs"),
])  # fmt: skip
def test_merge_refuses_a_rerun_unlike_the_committed_job(tmp_path, monkeypatch, edit, message):
    summary = _pending(tmp_path, monkeypatch, change_check=edit)
    text = summary.read_text()
    with pytest.raises(SystemExit, match=message):
        _merge()
    assert summary.read_text() == text  # nothing written


def test_merge_waits_for_every_planned_job(tmp_path, monkeypatch):
    summary = _pending(tmp_path, monkeypatch)
    text = summary.read_text()
    with pytest.raises(SystemExit, match="2 of 8 jobs have no saved row yet"):
        _merge(stop=19)
    assert summary.read_text() == text
