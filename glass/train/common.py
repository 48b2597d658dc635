"""Helpers shared by the trainers: atomic checkpoints, loss curves, progress bars."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["atomic_save", "plot_losses", "Progress"]


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a killed run never leaves a partial checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plot_losses(losses: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not losses:
        return
    x = torch.tensor(losses)
    k = max(1, len(losses) // 100)
    smooth = torch.nn.functional.avg_pool1d(x[None, None], k, stride=1)[0, 0] if len(losses) > k else x
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(losses)), losses, color="0.8", lw=0.5, label="per step")
    ax.plot(range(k - 1, k - 1 + len(smooth)), smooth.tolist(), color="tab:blue", label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="loss", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


class Progress:
    """A rich progress bar on a terminal, nothing otherwise; ``task`` returns an advance callable."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        console = console or Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not console.is_terminal,
        )  # fmt: skip

    def __enter__(self):
        self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self._bar.__exit__(*exc)

    def task(self, description: str, total: int, completed: int = 0):
        task_id = self._bar.add_task(description, total=total, completed=completed)

        def advance(new_description: str | None = None):
            self._bar.update(task_id, advance=1, description=new_description or description)

        return advance
