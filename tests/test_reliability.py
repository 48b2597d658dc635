"""Reliability: every checked input gets one clear line (the cases of
tests/validation_cases.py, which also generate docs/validation.md), W&B failures never stop a run, an
unwritable or full disk never leaves a half-written or finished-looking result, and no secret is
written anywhere.

Not repeated here: tests/test_cli.py (bad overrides, an out_dir under a file, a failed run marked
.failed), tests/test_sweep.py (launcher errors, SIGKILL and resume, damaged records re-run, W&B
grouping), tests/test_reproduce.py (bad reproduce input, report on bad paths).
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

import glass.files
from glass.cli import app
from glass.config import _SECRET_KEY
from tests.validation_cases import CASES, DOC, command_line, problems, render, run_case

runner = CliRunner()
# one tiny oracle job: a GLASS kernel, 2 points x 20 samples (about a second on 2 cores)
TINY = ["model=gmm", "sampler=glass", "sampler.steps=2", "task.n=20", "task.points=2", "metric=oracle",
        "metric.floor_repeats=2", "metric.n_projections=8"]  # fmt: skip


# -- every checked input: one line, exit != 0, nothing written; and the document is current

_OUTCOMES: dict[int, object] = {}


def outcome(i: int, base: Path):
    if i not in _OUTCOMES:
        _OUTCOMES[i] = run_case(CASES[i], base / f"case{i:03d}")
    return _OUTCOMES[i]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("validation")


@pytest.mark.parametrize("i", range(len(CASES)), ids=[command_line(c)[6:] for c in CASES])
def test_bad_input_gets_one_clear_line(i, scratch):
    case, out = CASES[i], outcome(i, scratch)
    assert not problems(case, out), f"{command_line(case)}: {problems(case, out)}\n{out.stderr}{out.stdout}"


def test_validation_doc_is_generated_from_the_cases(scratch):
    text = render([(case, outcome(i, scratch)) for i, case in enumerate(CASES)])
    assert DOC.read_text() == text, "docs/validation.md is out of date: run python -m tests.validation_cases"


def test_readme_counts_the_validation_cases():
    """The README's "the N validation cases" is the count in tests/validation_cases.py (it said 185
    when there were 205)."""
    import re

    readme = " ".join((DOC.parents[1] / "README.md").read_text().split())
    counts = re.findall(r"the (\d+) validation cases", readme)
    assert counts and all(int(n) == len(CASES) for n in counts), (counts, len(CASES))


# -- helpers


def run(*args: str):
    return runner.invoke(app, list(args))


def finished_runs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("runs/*/*") if p.is_dir() and p.suffix not in (".partial", ".failed"))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def keys(node) -> list[str]:
    """Every key of a nested config."""
    if isinstance(node, dict):
        return [str(k) for k in node] + [k for v in node.values() for k in keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in keys(v)]
    return []


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def read_only_bits_hold(d: Path) -> bool:
    """chmod ``d`` to 0o555 and report whether that stops writes (it does not for root; then the
    bits are restored and False returned)."""
    d.chmod(0o555)
    try:
        (d / "probe").write_text("")
    except OSError:
        return True
    (d / "probe").unlink()
    d.chmod(0o755)
    return False


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory nobody can write under. Permission bits do not stop root (the tests may run as
    root), so when they do not hold, a path under a regular file is used instead: creating it fails
    with NotADirectoryError for every user."""
    d = tmp_path / "read-only"
    d.mkdir()
    if read_only_bits_hold(d):
        return d
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("")
    return blocker / "read-only"


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B's directories in tmp_path, no network (a closed local port), no console capture."""
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home" / key.lower()))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home" / "runs"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("GLASS_DEBUG", raising=False)
    return tmp_path / "wandb-home"


# -- W&B never stops a run


def test_the_wandb_modes_glass_accepts_are_wandbs_own():
    """WANDB_MODE is checked against a constant (no wandb import before a run starts); it must stay
    the installed wandb's list, so an upgrade that changes it fails here."""
    import typing

    import wandb

    from glass.loggers import WANDB_MODES

    assert set(WANDB_MODES) == set(typing.get_args(wandb.Settings.model_fields["mode"].annotation))


def test_wandb_online_with_a_bad_key_warns_once_and_the_run_finishes(tmp_path, wandb_env, monkeypatch):
    """The real wandb.init: online mode (WANDB_MODE unset), a malformed key, no server."""
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    res = run("run", *TINY, "logger=wandb", "logger.mode=online", f"out_dir={tmp_path / 'out'}")
    assert res.exit_code == 0, res.output
    (done,) = finished_runs(tmp_path / "out")
    assert json.loads((done / "metrics.json").read_text())["rows"][0]["sampler"] == "glass M=2"
    (warning,) = warnings(res.stderr)
    assert "W&B init failed, continuing with local logs only" in warning
    assert "not-a-real-key" not in res.stderr + res.stdout


def test_wandb_unreachable_in_a_sweep_warns_once_and_is_not_retried(tmp_path, wandb_env, monkeypatch):
    """No network: wandb.init raises what it raises after its timeout (simulated: the real one takes
    15 s). The jobs of the sweep share the logger, so W&B is tried once and warned about once."""
    import wandb

    calls = []

    def unreachable(**kwargs):
        calls.append(kwargs)
        raise wandb.errors.CommError('Timed out while retrying: Post "http://127.0.0.1:9/graphql": refused')

    monkeypatch.setattr(wandb, "init", unreachable)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    res = run("run", "-m", *TINY, "seed=0,1", "logger=wandb", f"out_dir={tmp_path / 'out'}")
    assert res.exit_code == 0, res.output
    (sweep,) = (tmp_path / "out").glob("multirun/*")
    assert len(list(sweep.glob("0*/metrics.json"))) == 2 and not list(sweep.glob("*.failed"))
    assert len(calls) == 1 and calls[0]["mode"] == "online"
    (warning,) = warnings(res.stderr)
    assert "CommError: Timed out" in warning


def test_wandb_failing_to_log_warns_once(tmp_path, wandb_env, monkeypatch):
    import wandb

    class Run:
        summary: dict = {}

        def log(self, metrics):
            raise RuntimeError("quota exceeded")

        def finish(self):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kwargs: Run())
    res = run("run", *TINY, "logger=wandb", f"out_dir={tmp_path / 'out'}")
    assert res.exit_code == 0, res.output
    assert len(finished_runs(tmp_path / "out")) == 1
    assert warnings(res.stderr) == [
        "warning: W&B log failed, continuing with local logs only (W&B is off for the rest of this run or "
        "sweep): RuntimeError: quota exceeded"
    ]


def test_unwritable_wandb_directory_warns_once_and_the_sweep_finishes(tmp_path, wandb_env, monkeypatch):
    """The real wandb path, offline, with WANDB_DIR unwritable: W&B is skipped with one warning
    (wandb alone would fall back to the system's temporary directory), every job finishes."""
    bad = unwritable_dir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(bad))
    res = run("run", "-m", *TINY, "seed=0,1", "logger=wandb", f"out_dir={tmp_path / 'out'}")
    assert res.exit_code == 0, res.output
    (sweep,) = (tmp_path / "out").glob("multirun/*")
    assert len(list(sweep.glob("0*/metrics.json"))) == 2
    (warning,) = warnings(res.stderr)
    assert f"the W&B directory {str(bad)!r} is not writable" in warning
    assert not bad.exists()


# -- unwritable and full disks


def test_read_only_output_directory_fails_before_any_work(tmp_path, monkeypatch):
    """A read-only out_dir (real permission bits when they hold, else a read-only file system
    simulated below the directory): one line, exit 2, no sampling, nothing written."""
    from glass.tasks import Posterior

    out = tmp_path / "outputs"
    out.mkdir()
    if not read_only_bits_hold(out):  # root: make every write below `out` fail as on a read-only mount
        out.chmod(0o555)
        real_write = Path.write_text

        def read_only(self, *args, **kwargs):
            if str(self).startswith(str(out)):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_write(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(Posterior, "__call__", lambda *a, **k: pytest.fail("work started"))
    try:
        res = run("run", *TINY, f"out_dir={out}")
    finally:
        out.chmod(0o755)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: cannot write to the output directory {str(out)!r}: ")
    assert list(out.iterdir()) == []


class _FullDisk:
    """A file on a full disk: each write puts half of its data on disk, then fails with ENOSPC."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def errors_after_progress(stderr: str) -> str:
    """stderr without the progress lines a run prints when stderr is not a terminal."""
    progress = re.compile(r"^(\[\d+/\d+\] )?\S+: \d+/\d+, elapsed")
    return "".join(line for line in stderr.splitlines(keepends=True) if not progress.match(line))


def fill_disk(monkeypatch, *names: str) -> None:
    """Writes through glass.files' atomic writers to temporary files named like ``names`` fail."""

    def fake_open(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        name = Path(file).name
        return _FullDisk(f) if "w" in mode and any(name.startswith(f".{n}") for n in names) else f

    monkeypatch.setattr(glass.files, "open", fake_open, raising=False)


def no_temporary_files(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_while_writing_results_leaves_no_half_written_record(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = run("run", *TINY, f"out_dir={out}")
    assert first.exit_code == 0, first.output
    (earlier,) = finished_runs(out)
    before = snapshot(earlier)

    fill_disk(monkeypatch, "metrics.json")
    res = run("run", *TINY, "seed=1", f"out_dir={out}")
    assert res.exit_code == 1 and res.stdout == ""
    err = errors_after_progress(res.stderr)
    assert err.count("\n") == 1 and "Traceback" not in res.stderr
    assert err.startswith("error: no space left on device (OSError: [Errno 28] No space left on")
    assert finished_runs(out) == [earlier] and snapshot(earlier) == before
    (failed,) = out.glob("runs/*/*.failed")
    assert not (failed / "metrics.json").exists() and "No space left" in (failed / "error.txt").read_text()
    assert no_temporary_files(out) and not list(out.glob("runs/*/*.partial"))

    # the disk is so full that error.txt cannot be written either: the directory is still marked failed
    real_write = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "error.txt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    again = run("run", *TINY, "seed=2", f"out_dir={out}")
    assert again.exit_code == 1 and errors_after_progress(again.stderr).count("\n") == 1
    assert errors_after_progress(again.stderr).startswith("error: no space left on device")
    assert len(list(out.glob("runs/*/*.failed"))) == 2 and not list(out.glob("runs/*/*.partial"))
    assert finished_runs(out) == [earlier] and snapshot(earlier) == before and no_temporary_files(out)


def test_full_disk_while_writing_a_prompts_images_leaves_no_partial_png(tmp_path, monkeypatch):
    """A prompt's images are written whole or not at all (its record, written after them, is what
    marks the prompt done): the disk fills at the second image."""
    import numpy as np
    import torch
    from PIL import Image

    from glass.outputs import _save_pngs

    fill_disk(monkeypatch, "00001.png")
    images = torch.linspace(-1, 1, 3 * 3 * 8 * 8).reshape(3, 3, 8, 8)
    with pytest.raises(OSError, match="No space left"):
        _save_pngs(images, tmp_path, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["00000.png"] and no_temporary_files(tmp_path)
    with Image.open(tmp_path / "00000.png") as im:
        pixels = torch.tensor(np.asarray(im.convert("RGB"))).permute(2, 0, 1).long()
    assert torch.equal(pixels, ((images[0] + 1) / 2 * 255 + 0.5).clamp(0, 255).long())


def test_full_disk_during_a_sweep_keeps_finished_jobs_and_summaries(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = run("run", "-m", *TINY, "seed=0,1", f"out_dir={out}")
    assert first.exit_code == 0, first.output
    (sweep,) = out.glob("multirun/*")
    before = snapshot(sweep)
    fill_disk(monkeypatch, "metrics.json", "summary.")
    res = run("run", "-m", *TINY, "seed=0,1,2", f"out_dir={out}", f"--sweep-dir={sweep}")
    assert res.exit_code == 1 and res.stdout == ""
    lines = res.stderr.splitlines()  # "sweep ...: 3 jobs, 2 already finished (skipped), running 1", the error
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert lines[-1].startswith("error: no space left on device")
    assert "Traceback" not in res.stderr
    after = snapshot(sweep)
    kept = {k: v for k, v in before.items() if k != "sweep.json"}  # sweep.json lists the third job now
    assert {k: after[k] for k in kept} == kept
    (failed,) = sweep.glob("002-*.failed")
    assert not (failed / "metrics.json").exists() and no_temporary_files(sweep)


# -- secrets


def test_no_secret_is_written_to_outputs_or_wandb_files(tmp_path, wandb_env, monkeypatch):
    key = "glass-secret-" + "5e3b" * 10  # unique, and as long as a real W&B key
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    single = run("run", *TINY, "logger=wandb", f"out_dir={out}")
    sweep = run("run", "-m", *TINY, "seed=0,1", "logger=wandb", f"out_dir={out}")
    for res in (single, sweep):
        assert res.exit_code == 0 and not warnings(res.stderr), res.output
        assert key not in res.stdout + res.stderr
    assert len(list(wandb_env.rglob("*.wandb"))) == 3  # W&B did write its offline runs: scan them
    files = [p for d in (out, wandb_env) for p in d.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert leaks == []
    configs = list(out.rglob("config.yaml"))
    assert len(configs) == 3
    for config in configs:
        cfg = OmegaConf.to_container(OmegaConf.load(config))
        assert set(cfg["logger"]) == {"_target_", "project", "entity", "mode", "tags"}
        assert not [k for k in keys(cfg) if _SECRET_KEY.match(k) or "key" in k.lower()]
    assert os.environ["WANDB_API_KEY"] == key  # read by wandb from the environment only
