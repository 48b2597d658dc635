"""Helpers shared by the trainers: atomic checkpoints, loss curves, progress bars."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from glass.files import remove_dead_tmps, write_bytes_atomic, write_text_atomic

__all__ = [
    "atomic_save",
    "export_weights",
    "check_resume_config",
    "load_resume",
    "plot_losses",
    "save_losses",
    "read_losses",
    "Progress",
]


class Trainer:
    """What both trainers share: their config (every constructor argument), the resume keys that
    must not change between runs, and the start of a run (threads, run directory)."""

    RESUME_KEYS: tuple[str, ...] = ()
    threads: int | None = None
    export: str | None = None
    max_minutes: float

    def config(self) -> dict:
        return dict(vars(self))

    def check_not_finished(
        self, ckpt: Path, step: int, last: int, elapsed: float, stored: dict | None
    ) -> None:
        """A resumed run with nothing left to do (at its last step, or its max_minutes of training time
        used up) is one ValueError saying what to change: it trained 0 steps and exported again under
        settings (e.g. a longer max_minutes) that did not make the weights. A new ``trainer.export``
        (``stored``: the checkpoint's settings) is allowed: the same weights exported elsewhere."""
        if stored is not None and stored.get("export") != self.export:
            return
        if step >= last:
            fixed = "max_steps" in self.RESUME_KEYS  # the classifier's length is part of its schedule
            how = "trainer.resume=false to start over" if fixed else "raise trainer.max_steps to go on"
            raise ValueError(f"{ckpt} is at its last step ({last}) already: nothing to train ({how})")
        if elapsed >= self.max_minutes * 60:
            raise ValueError(
                f"{ckpt} has trained {elapsed / 60:.1f} minutes, trainer.max_minutes={self.max_minutes:g} "
                "already: nothing to train (raise trainer.max_minutes to go on)"
            )

    @staticmethod
    def check_common(resume, threads, lr=None, ema_decay=None, export=None) -> None:
        """The options every trainer takes, checked before any data loads: ``trainer.resume=no``
        arrives as the string 'no' (truthy: it resumed), a negative thread count or learning rate
        failed late or without naming the option, an EMA decay of 1.5 was silently capped."""
        from glass.checks import check_int, check_number, check_positive

        if not isinstance(resume, bool):
            raise ValueError(f"trainer.resume must be true or false, got {resume!r}")
        if threads is not None:
            check_int("trainer.threads", threads, 1)
        if lr is not None:
            check_positive("trainer.lr", lr)
        if ema_decay is not None and not check_number("trainer.ema_decay", ema_decay, 0) < 1:
            raise ValueError(f"trainer.ema_decay must be a number in [0, 1), got {ema_decay!r}")
        if export is not None and not (isinstance(export, str) and export):
            raise ValueError(f"trainer.export must be a path (or null: no export), got {export!r}")

    def run_config(self, seed: int) -> dict:
        """The settings of a run: the trainer's and its seed (checkpoints and manifests keep these)."""
        return {**self.config(), "seed": seed}

    def _start(self, run_dir: Path) -> Path:
        if self.threads:
            torch.set_num_threads(self.threads)
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_dead_tmps(run_dir)  # a checkpoint write killed before its rename
        return run_dir / "last.pt"


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, step: int, decay: float) -> None:
    """EMA of the weights with the usual warm-up: decay min(decay, (1 + step) / (10 + step))."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p, 1 - d)


def atomic_save(obj, path: Path) -> None:
    """torch.save through :func:`glass.files.write_bytes_atomic`: a killed run never leaves a partial
    checkpoint."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def export_weights(state: dict, export: str, manifest: dict) -> Path:
    """Write ``<export>.safetensors`` and its manifest ``<export>.json`` (sha256 of the weights and the
    manifest's own manifest_sha256 added).

    A relative ``export`` is resolved against the repository root (the parent of ``glass/``), so
    ``glass/assets/mnist_flow`` lands where the loaders look whatever the working directory. Each
    file is written atomically (:mod:`glass.files`), the weights first, then the manifest: a run killed
    between the two leaves new weights beside the old manifest, which the loader refuses (sha256).
    """
    import hashlib
    import json

    from safetensors.torch import save

    from glass.models.mnist import seal_manifest

    base = Path(export)
    if not base.is_absolute():
        base = Path(__file__).resolve().parents[2] / base
    path, man = Path(f"{base}.safetensors"), Path(f"{base}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in (path.name, man.name):  # an export killed before its rename (glass/assets is shipped)
        remove_dead_tmps(path.parent, name)
    data = save({k: v.detach().contiguous() for k, v in state.items()})
    write_bytes_atomic(path, data)
    sealed = seal_manifest({**manifest, "sha256": hashlib.sha256(data).hexdigest()})
    write_text_atomic(man, json.dumps(sealed, indent=2) + "\n")
    return path


def load_resume(ckpt: Path, needs: tuple[str, ...]) -> dict:
    """``ckpt`` (``last.pt``) as a dict holding ``needs``; a file torch cannot read (truncated, not a
    checkpoint) or one from an older trainer is one ValueError naming it and the way out."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  torch's reader raises RuntimeError, pickle errors, EOFError...
        raise ValueError(
            f"{ckpt} is not a readable checkpoint ({type(e).__name__}); pass trainer.resume=false to start "
            "over (or remove it)"
        ) from None
    missing = [k for k in needs if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(
            f"{ckpt} has no {', '.join(missing)} (another trainer's or an older checkpoint); pass "
            "trainer.resume=false to start over"
        )
    return state


def check_resume_config(stored: dict | None, current: dict, keys: tuple[str, ...], ckpt: Path) -> None:
    """Refuse to resume a checkpoint trained with different settings (one-line ValueError)."""
    if not stored:
        return
    for k in (*keys, "seed"):  # a resumed run draws the stored generator's batches: the seed is the run's
        if k in stored and stored[k] != current.get(k):
            raise ValueError(
                f"{ckpt} was trained with {k}={stored[k]!r}, not {current.get(k)!r}; "
                "pass trainer.resume=false to start over, or keep the setting"
            )


def save_losses(losses: list[float], run_dir: Path, title: str, first_step: int = 0) -> None:
    """``losses.csv`` (``step,loss``, one row per step, steps counted from ``first_step + 1``) and
    ``loss.png`` drawn from it: the curve can be redrawn, or drawn differently, from the numbers after
    the run and its checkpoint are gone (``losses, first = read_losses(csv)``, then
    ``plot_losses(losses, png, title, first_step=first)``)."""
    rows = "".join(f"{first_step + 1 + k},{v:.6g}\n" for k, v in enumerate(losses))
    write_text_atomic(run_dir / "losses.csv", "step,loss\n" + rows)
    plot_losses(losses, run_dir / "loss.png", title, first_step=first_step)


def read_losses(path: Path) -> tuple[list[float], int]:
    """The losses a ``losses.csv`` holds and the step before its first (``first_step``), as
    ``plot_losses`` takes them."""
    lines = Path(path).read_text().split()
    if not lines or lines[0] != "step,loss":
        raise ValueError(f"{path} is not a losses.csv (its first line should be 'step,loss')")
    rows = [line.split(",") for line in lines[1:]]
    return [float(v) for _, v in rows], (int(rows[0][0]) - 1 if rows else 0)


def plot_losses(losses: list[float], path: Path, title: str, first_step: int = 0) -> None:
    """The loss per step (grey) and its running mean, on a log axis in plain numbers; a continuation
    of an earlier checkpoint counts its steps from ``first_step`` (the steps it was trained before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not losses:
        return
    x = torch.tensor(losses)
    k = max(1, len(losses) // 100)
    smooth = torch.nn.functional.avg_pool1d(x[None, None], k, stride=1)[0, 0] if len(losses) > k else x
    fig, ax = plt.subplots(figsize=(6, 3.5))
    first = first_step + 1
    ax.plot(range(first, first + len(losses)), losses, color="0.8", lw=0.5, label="per step")
    ax.plot(range(first + k - 1, first + k - 1 + len(smooth)), smooth.tolist(), color="tab:blue",
            label=f"mean of {k}")  # fmt: skip
    ax.set(xlabel="training step", ylabel="loss", title=title, yscale="log")
    from matplotlib.ticker import FormatStrFormatter

    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):  # 0.2, not 2 x 10^-1
        axis(FormatStrFormatter("%g"))
    ax.legend(loc="upper right")  # a falling loss leaves the upper right free
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=100, format="png")
    plt.close(fig)
    write_bytes_atomic(path, png.getvalue())


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
