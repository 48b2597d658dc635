"""Experiment loggers. Local files are always written by the runner; W&B is optional and a W&B
failure (not installed, no network, bad key, read-only directory) only warns once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["NullLogger", "WandbLogger"]


def warn(msg: str) -> None:
    key = os.environ.get("WANDB_API_KEY", "")
    if len(key) >= 8:  # never echo the key, whatever an error message quotes
        msg = msg.replace(key, "***")
    print(f"warning: {msg}", file=sys.stderr)


class NullLogger:
    def start(self, config: dict, run_dir: Path, name: str, group: str | None = None) -> None:
        pass

    def log(self, metrics: dict) -> None:
        pass

    def log_images(self, run_dir: Path, images: Path) -> None:
        """A prompt-set run's images (``images.jsonl`` in ``run_dir``), after they are all written."""

    def finish(self) -> None:
        pass

    def moved(self, old: Path, new: Path) -> None:
        """The run directory was renamed (``<dir>.partial`` -> ``<dir>``) after :meth:`finish`."""


WANDB_MODES = ("offline", "online", "disabled", "dryrun", "run", "shared")  # wandb.Settings.mode (0.31)


class WandbLogger(NullLogger):
    """Weights & Biases logger; ``WANDB_MODE`` in the environment overrides ``mode``, and W&B's files
    go to ``WANDB_DIR`` if it is set, else into the run directory. The API key is read by wandb from
    ``WANDB_API_KEY`` (or ``wandb login``); it is never part of the config. After the first failure
    the logger (shared by the jobs of a sweep) warns once and stays off."""

    def __init__(
        self,
        project: str = "glass-flows",
        entity: str | None = None,
        mode: str = "offline",
        tags=(),
    ):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
        self.project, self.entity, self.tags = project, entity, list(tags or [])
        self.mode = os.environ.get("WANDB_MODE", mode)
        if self.mode not in WANDB_MODES:  # checked here, before any work: W&B would fail at start
            raise ValueError(
                f"WANDB_MODE={self.mode!r} in the environment (it overrides logger.mode) must be one of "
                f"{', '.join(WANDB_MODES)}"
            )
        self._run, self._failed = None, False

    def _guard(self, what: str, fn):
        if self._failed:
            return None
        try:
            return fn()
        except Exception as e:  # W&B must never stop a run
            self._failed = True
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            warn(
                f"W&B {what} failed, continuing with local logs only (W&B is off for the rest of this "
                f"run or sweep): {type(e).__name__}: {reason}"
            )
            return None

    def start(self, config, run_dir, name, group=None):
        def init():
            directory = Path(os.environ.get("WANDB_DIR") or run_dir).expanduser()
            try:  # else wandb falls back to the system's temporary directory
                if self.mode != "disabled":
                    directory.mkdir(parents=True, exist_ok=True)
                    probe = directory / f".glass-write-test-{os.getpid()}"
                    probe.write_text("")
                    probe.unlink()
            except OSError as e:
                reason = e.strerror or e
                raise OSError(f"the W&B directory {str(directory)!r} is not writable ({reason})") from None
            import wandb  # lazy: slow import, optional at run time

            return wandb.init(
                project=self.project,
                entity=self.entity,
                mode=self.mode,
                dir=str(directory),
                name=name,
                group=group,
                tags=self.tags,
                config=config,
                reinit="finish_previous",
                # offline, W&B's own footer would name the .partial directory that is renamed next;
                # moved() prints the sync command with the final path instead
                settings=wandb.Settings(silent=True) if self.mode == "offline" else None,
            )

        self._run = self._guard("init", init)
        self._sync_dir = None
        sync = getattr(getattr(self._run, "settings", None), "sync_dir", None)
        if sync and self.mode == "offline":
            self._sync_dir = Path(str(sync))

    def log(self, metrics):
        if self._run is not None:
            self._guard("log", lambda: (self._run.log(metrics), self._run.summary.update(metrics)))

    def log_images(self, run_dir, images):
        """W&B tables ``images/<method>``: a row per image (prompt, repeat, the image, its steered reward
        and every held-out reward), so W&B's table view filters and sorts them; a method with more than
        W&B's 10,000 rows a table gets ``images/<method>/<part>`` tables."""
        if self._run is not None:

            def log():
                for name, table in _image_tables(Path(run_dir), Path(images)):
                    self._run.log({name: table})

            self._guard("image table", log)

    def finish(self):
        if self._run is not None:
            self._guard("finish", self._run.finish)
            self._run = None

    def moved(self, old, new):
        sync, self._sync_dir = getattr(self, "_sync_dir", None), None
        if sync is None:
            return
        try:
            sync = Path(new) / sync.relative_to(old)
        except ValueError:  # WANDB_DIR elsewhere: not moved
            pass
        print(f"W&B offline run: upload it with `wandb sync {sync}`", file=sys.stderr)


def _image_tables(run_dir: Path, images: Path, rows: int = 10_000):
    """(name, wandb.Table) per method (and part of ``rows`` images) of a prompt-set run."""
    import json

    import wandb

    lines = [json.loads(line) for line in images.read_text().splitlines()]
    names = list(dict.fromkeys(k for line in lines for k in line.get("rewards", {})))
    methods = list(dict.fromkeys(line["method"] for line in lines))
    for method in methods:
        mine = [line for line in lines if line["method"] == method]
        for part in range(0, len(mine), rows):
            table = wandb.Table(columns=["prompt_index", "prompt", "repeat", "image", "reward", *names])
            for line in mine[part : part + rows]:
                table.add_data(line["prompt_index"], line["prompt"], line["repeat"],
                               wandb.Image(str(run_dir / line["path"])), line.get("reward"),
                               *(line.get("rewards", {}).get(n) for n in names))  # fmt: skip
            suffix = f"/{part // rows}" if len(mine) > rows else ""
            yield f"images/{method}{suffix}", table
