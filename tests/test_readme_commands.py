"""Every ``glass run`` command line the README shows composes: its groups, options and keys exist,
and where its model is shipped or built here (not a hub download) its jobs are built too: the
model, task, sampler, reward and metric instantiated and validated (a bad value fails as the user's
command would). Nothing is sampled, so a renamed key or group, or a value out of range, that the
README still names fails here instead of in a user's first command.
"""

import re
import shlex
from pathlib import Path

import pytest

from glass.config import compose, expand_sweep
from glass.runner import Shared, build_job

README = Path(__file__).resolve().parents[1] / "README.md"
FLAGS = {"-m", "--multirun"}


def readme_run_commands() -> list[str]:
    """The ``glass run`` lines of the README's bash blocks, continuations joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("glass run"):
                commands.append(line)
    return commands


def overrides_of(command: str) -> tuple[list[str], bool]:
    """(the overrides, whether it is a sweep) of one README line, `glass run` and comments dropped."""
    words = shlex.split(command, comments=True)[2:]
    return [w for w in words if w not in FLAGS], any(w in FLAGS for w in words)


COMMANDS = readme_run_commands()


def test_the_readme_shows_run_commands():
    assert len(COMMANDS) >= 20, COMMANDS  # the extraction itself must keep working


HUB = ("glass.pipelines.load.load_pipeline", "glass.models.sit.load_sit")  # weights from a hub: not here


@pytest.fixture(scope="module")
def shared():
    """Models and metrics loaded once for every command of this module (and released after it)."""
    return Shared()


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_run_command_composes(command, tmp_path, shared):
    words, sweep = overrides_of(command)
    if any("<" in w or "$" in w for w in words):
        pytest.skip("has a placeholder the user fills in")
    if any(w.startswith("-") for w in words):  # --cfg / --help: the CLI's own options (test_cli)
        pytest.skip("prints the config or help")
    words = [w for w in words if not w.startswith("hydra/launcher=") and not w.startswith("hydra.")]
    for job in expand_sweep(words) if sweep else [words]:
        job = [*job, f"out_dir={tmp_path}"]
        cfg = compose(job)
        if cfg.model._target_ not in HUB:
            build_job(job, cfg, shared)  # raises what the command would print
