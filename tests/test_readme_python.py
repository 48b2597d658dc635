"""The README's Python blocks run as printed (API drift fails here, not in a user's first script).

"On any model" runs verbatim on the oracle; "On the diffusers pipeline you already hold" runs on a tiny
random-weight FLUX.1 pipeline on the CPU, with only the lines that need the hub, a GPU or an hour
replaced (each replacement must find its line, so an edit of the README that drops one fails here).
"""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block after ``heading``."""
    text = README.read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], flags=re.S).group(1)


def replaced(code: str, replacements: list[tuple[str, str]]) -> str:
    for pattern, new in replacements:
        code, n = re.subn(pattern, new, code, flags=re.M)
        assert n >= 1, f"the README block no longer has {pattern!r}"
    return code


def test_on_any_model_block_runs_and_matches_its_comments(capsys):
    # the block draws some noise from torch's global generator (x_t, res.draw(), the inverse problem's
    # FK run): seeded, so the check below is one fixed draw (steered: 100 samples of a mixture of
    # +-1.5, whose mean has a standard error of ~0.15; unseeded it failed about one run in ten)
    torch.manual_seed(0)
    ns = {}
    exec(compile(python_block("### On any model"), "README.md (On any model)", "exec"), ns)
    gmm, x_t = ns["gmm"], ns["x_t"]
    assert ns["z"].shape == ns["x_next"].shape == x_t.shape == (1000, 2) and ns["x_1"].shape == (1000, 2)
    assert gmm.nfe > 0
    # "steered ≈ samples of the tilted target": its mean against the exact tilted mixture's
    tilted = gmm.tilted(ns["LinearReward"]().weights(2), 2.0)
    exact_mean = (tilted.weights[:, None] * tilted.means).sum(0)
    assert torch.allclose(ns["steered"].double().mean(0), exact_mean, atol=0.15)
    # the inverse-problem lines print the steered posterior mean beside the exact one
    assert torch.allclose(ns["res"].draw().double().mean(0), ns["posterior"].mean(), atol=0.15)


def test_on_the_pipeline_you_hold_block_runs_on_a_tiny_flux():
    code = replaced(
        python_block("### On the diffusers pipeline you already hold"),
        [
            (r"^pipe = FluxPipeline\.from_pretrained\(.*$",
             "from tests.tiny_pipes import tiny_flux_pipe\npipe = tiny_flux_pipe()"),
            (r"glass\.from_pipe\(pipe\)", "glass.from_pipe(pipe, height=32, width=32)"),  # 1024 px on a CPU
            (r'"cuda"', '"cpu"'),
            (r", 28, n=2,", ", 4, n=2,"),  # 4 transitions instead of the pipeline's 28 (a CPU test)
            (r"grid=28,", "grid=4,"),
        ],
    )  # fmt: skip
    ns = {}
    exec(compile(code, "README.md (On the diffusers pipeline you already hold)", "exec"), ns)
    model, x, images = ns["model"], ns["x"], ns["images"]
    assert x.shape == (2, *model.shape) and images.shape == (2, 3, 32, 32)
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    assert ns["best"].shape == (2, 3, 32, 32)
    assert ns["post"].shape[:2] == (1, 4)
